"""The foundation check: `scraper work` next to the bare loop, same pages, same run.

    .venv/bin/python benchmarks/work_vs_bare.py                 # ~20,000 pages, 50 ms and 0 ms, 3 rounds
    .venv/bin/python benchmarks/work_vs_bare.py --latency-ms 50 --rounds 1

One simulator per latency (127.0.0.1, its own process), warmed by one untimed
bare pass. Then, alternating so both see the same machine weather, the `bare`
mode (one uvloop process, 256 workers over the precomputed URL list) and the
`scraper` mode with ``scraper work --processes 2 --concurrency 128`` crawl the
same corpus; each output is checked exact against the corpus. Reported:
pages/s over the fetching command's wall time (for the scraper the `scraper
work` step: its start-up, Redis traffic and burst exit included), the steady
rate the simulator saw per second, and the ratio (target >= 0.8).
Writes ``results/work_vs_bare.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import _harness as h
from scraper.simulator.corpus import Corpus

TARGET = 0.8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=400_000, help="default 400000 (about 20,000 pages)")
    parser.add_argument("--videos", type=int, default=240)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[50.0, 0.0])
    parser.add_argument("--rounds", type=int, default=3, help="bare/scraper pairs per latency; medians reported")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    info = h.machine_info()
    corpus = Corpus.generate(seed=args.seed, videos=args.videos, comments=args.comments)
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-wvb-"))
    job = h.Job.build(corpus, workdir)
    print(f"# work vs bare: {job.pages:,} pages, {job.comments:,} comments; {h.machine_line(info)}", flush=True)
    scraper_args = ["--processes", str(args.processes), "--concurrency", str(args.concurrency)]
    results: list[dict[str, Any]] = []
    for latency in args.latency_ms:
        with h.Simulator(videos=args.videos, comments=args.comments, seed=args.seed, latency_ms=latency) as sim:
            job.bind(sim.url)
            h.run_mode("bare", job, sim, timeout_s=args.timeout)  # warm the simulator's page cache
            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "scraper": []}
            for round_ in range(args.rounds):
                for mode in ("bare", "scraper") if round_ % 2 == 0 else ("scraper", "bare"):
                    row = h.run_mode(
                        mode, job, sim, timeout_s=args.timeout, extra_args=scraper_args if mode == "scraper" else None
                    )
                    runs[mode].append(row)
                    shown = f"{row['pages_per_s']:,.0f} pages/s" if row["status"] == "ok" else row.get("failure", "")
                    print(f"  {latency:g} ms round {round_ + 1}: {mode:8s} {row['status']} {shown} (steady {h.fmt(row['steady_pages_per_s'])})", flush=True)
            bare, scraper = h.median_row(runs["bare"]), h.median_row(runs["scraper"])
            entry = {"latency_ms": latency, "bare": bare, "scraper": scraper}
            if bare["status"] == scraper["status"] == "ok":
                # Each round's pair saw the same machine weather: the median of the
                # per-round ratios is the headline, steadier than a ratio of medians.
                pairs = [
                    sc["pages_per_s"] / b["pages_per_s"] for b, sc in zip(runs["bare"], runs["scraper"])
                ]
                entry["round_ratios"] = [round(r, 3) for r in pairs]
                entry["ratio"] = round(h.median(pairs), 3)
                if bare.get("steady_pages_per_s") and scraper.get("steady_pages_per_s"):
                    entry["steady_ratio"] = round(scraper["steady_pages_per_s"] / bare["steady_pages_per_s"], 3)
            results.append(entry)

    headers = [
        "latency", "bare pages/s", f"scraper work {args.processes}x{args.concurrency} pages/s", "ratio (median of rounds)",
        "rounds' ratios",
        "steady bare", "steady scraper", "steady ratio", "CPU ms/page bare", "CPU ms/page work", "worker child RSS MB",
    ]
    rows = []
    for e in results:
        b, s = e["bare"], e["scraper"]
        rows.append(
            [
                f"{e['latency_ms']:g} ms",
                h.fmt(b.get("pages_per_s")) if b["status"] == "ok" else "FAILED",
                h.fmt(s.get("pages_per_s")) if s["status"] == "ok" else "FAILED",
                f"**{e['ratio']:.2f}**" if "ratio" in e else "-",
                " / ".join(f"{r:.2f}" for r in e.get("round_ratios", [])) or "-",
                h.fmt(b.get("steady_pages_per_s")),
                h.fmt(s.get("steady_pages_per_s")),
                f"{e['steady_ratio']:.2f}" if "steady_ratio" in e else "-",
                h.fmt(b["cpu_ms_per_page"], 2),
                h.fmt(s.get("work_cpu_ms_per_page"), 2),
                h.fmt(s.get("worker_child_max_rss_mb")),
            ]
        )
    table = h.markdown_table(headers, rows)
    verdicts = [
        f"- {e['latency_ms']:g} ms: scraper work / bare = {e['ratio']:.2f} (target >= {TARGET}: {'meets' if e['ratio'] >= TARGET else 'MISSES'})"
        for e in results
        if "ratio" in e
    ]
    print()
    print(table)
    print("\n".join(verdicts))
    command = "python benchmarks/work_vs_bare.py " + " ".join(sys.argv[1:])
    md = [
        f"# scraper work vs the bare loop: `{command.strip()}`",
        "",
        f"- machine: {h.machine_line(info)}",
        f"- corpus: seed {args.seed}, {args.videos} videos, {job.comments:,} comments, {job.pages:,} pages; "
        f"{args.rounds} alternating rounds per latency (bare first in odd rounds, scraper first in even ones); "
        "rates are medians, the ratio is the median of the rounds' ratios",
        "- pages/s: over the fetching command's wall time (bare: its whole process; scraper: the `scraper work` "
        "step, start-up and burst exit included). Steady: the median requests/s the simulator saw in the busy "
        "seconds of the run. Work CPU: the `scraper work` tree (supervisor + children), not Redis.",
        "- noisy: 2 cores shared by client, simulator and other engineers' test runs.",
        "",
        table,
        "",
        *verdicts,
        "",
    ]
    h.RESULTS_DIR.mkdir(exist_ok=True)
    (h.RESULTS_DIR / "work_vs_bare.md").write_text("\n".join(md))
    slim = [
        {k: v for k, v in e.items() if k not in ("bare", "scraper")}
        | {m: {k: v for k, v in e[m].items() if k != "result"} for m in ("bare", "scraper")}
        for e in results
    ]
    (h.RESULTS_DIR / "work_vs_bare.json").write_text(json.dumps({"machine": info, "results": slim}, indent=1) + "\n")
    print(f"\nwrote {h.RESULTS_DIR / 'work_vs_bare.md'}")
    return 0 if all(e["bare"]["status"] == e["scraper"]["status"] == "ok" for e in results) else 1


if __name__ == "__main__":
    sys.exit(main())
