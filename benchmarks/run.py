"""The one benchmark command: every mode, the same crawl, the same simulator, a table.

    .venv/bin/python benchmarks/run.py                      # 333,000 comments, latency 0 and 50 ms
    .venv/bin/python benchmarks/run.py --quick              # ~20,000 comments: a smoke run
    .venv/bin/python benchmarks/run.py --modes bare scraper --latency-ms 50 --repeat 3

For each latency a fresh simulator (``scraper simulate``, its own process,
127.0.0.1) serves the corpus; one untimed pass of the `bare` mode renders
every page into its cache first, so no mode pays for the server's first
render. Then each mode crawls it as a subprocess and is measured: wall time,
user+sys CPU of its process tree (the simulator's excluded), peak RSS. A mode
counts only if its output holds exactly the corpus's comment ids (every one,
none unexpected); otherwise it is FAILED in the table, not timed.

Writes ``results/latest.md``, ``results/latest.json``, ``results/throughput.png``
(``--quick``: ``results/quick.*``, so a smoke run never replaces the figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
from scraper.simulator.corpus import Corpus

TARGETS = {"bare": 0.8, "scrapy": 10.0, "threads": 3.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=333_000, help="comments in the corpus (default 333000)")
    parser.add_argument("--videos", type=int, default=200, help="videos in the corpus (default 200: ~16.6k pages)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0], help="simulator latencies (default 0 50)")
    parser.add_argument("--modes", nargs="+", help=f"subset of: {', '.join(h.DEFAULT_MODES)}")
    parser.add_argument("--quick", action="store_true", help="small corpus (20,000 comments, 24 videos)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the median is reported")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a mode may take before it is killed")
    parser.add_argument("--scraper-processes", type=int, default=2)
    parser.add_argument("--scraper-concurrency", type=int, default=256)
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed pass that fills the simulator's cache")
    parser.add_argument("--name", help="results file stem (default latest, or quick with --quick)")
    parser.add_argument("--render", metavar="JSON", help="only redraw the chart from a results JSON")
    args = parser.parse_args()
    if args.quick:
        args.comments, args.videos = 20_000, 24
    available = h.available_modes()
    if args.modes:
        unknown = [m for m in args.modes if m not in h.MODES]
        if unknown:
            parser.error(f"unknown modes {unknown}; choose from {h.DEFAULT_MODES}")
        missing = [m for m in args.modes if m not in available]
        if missing:
            parser.error(f"modes not available here: {missing} (scrapy-redis: pip install scrapy-redis)")
    else:
        args.modes = available
    args.name = args.name or ("quick" if args.quick else "latest")
    return args


def mode_args(mode: str, args: argparse.Namespace) -> list[str]:
    if mode == "scraper":
        return ["--processes", str(args.scraper_processes), "--concurrency", str(args.scraper_concurrency)]
    return []


def table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "mode", "status", "pages/s", "comments/s", "fetch s", "end-to-end s", "client CPU ms/page",
        "peak RSS MB/proc", "tree RSS MB", "server CPU ms/page", "output",
    ]
    body = []
    for r in rows:
        rss = h.fmt(r["max_proc_rss_mb"])
        if r.get("worker_child_max_rss_mb") is not None:
            rss = f"{h.fmt(r['worker_child_max_rss_mb'])} (worker child)"
        ok = r["status"] == "ok"
        body.append(
            [
                f"`{r['mode']}`",
                r["status"],
                h.fmt(r.get("pages_per_s")) if ok else "-",
                h.fmt(r.get("comments_per_s")) if ok else "-",
                h.fmt(r["fetch_s"], 2) if ok else "-",
                h.fmt(r["wall_s"], 2) if ok else "-",
                h.fmt(r["cpu_ms_per_page"], 2),
                rss,
                h.fmt(r["tree_rss_mb"]),
                h.fmt(r["server_cpu_ms_per_page"], 2),
                r["check"] if ok else f"{r['check']}; {r.get('failure', '')}".replace("|", "/")[:200],
            ]
        )
    return h.markdown_table(headers, body)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    by_mode = {r["mode"]: r for r in rows if r["status"] == "ok"}
    scraper = by_mode.get("scraper")
    lines = []
    for peer, target in TARGETS.items():
        other = by_mode.get(peer)
        if scraper is None or other is None:
            lines.append(f"- scraper / {peer}: n/a (one of them FAILED or was not run)")
            continue
        fetch = scraper["pages_per_s"] / other["pages_per_s"]
        e2e = scraper["e2e_pages_per_s"] / other["e2e_pages_per_s"]
        verdict = "meets" if fetch >= target else "MISSES"
        lines.append(
            f"- scraper / {peer}: **{fetch:.2f}x** pages/s (fetch step; target >= {target:g}x: {verdict}); "
            f"{e2e:.2f}x end to end (coordinate + work + export vs the whole {peer} run)"
        )
    if scraper is not None and scraper.get("worker_child_max_rss_mb") is not None:
        rss = scraper["worker_child_max_rss_mb"]
        lines.append(
            f"- scraper worker child peak RSS: {rss:.0f} MB at concurrency {scraper['result'].get('concurrency')} "
            f"(target <= 150 MB: {'meets' if rss <= 150 else 'MISSES'})"
        )
    return lines


def chart(sections: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: pages/s of each mode, one bar per latency (log scale)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    modes: list[str] = []
    for section in sections:
        for r in section["rows"]:
            if r["mode"] not in modes:
                modes.append(r["mode"])
    width = 0.8 / max(len(sections), 1)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for i, section in enumerate(sections):
        by_mode = {r["mode"]: r for r in section["rows"]}
        xs = [m + (i - (len(sections) - 1) / 2) * width for m in range(len(modes))]
        values = [float(by_mode[m].get("pages_per_s") or 0) if m in by_mode else 0.0 for m in modes]
        bars = ax.bar(xs, values, width, label=f"latency {section['latency_ms']:g} ms")
        for bar, mode, value in zip(bars, modes, values):
            label = f"{value:,.0f}" if value else ("FAILED" if mode in by_mode else "")
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, max(value, 1)), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(modes)), modes, rotation=20, ha="right")
    ax.set_yscale("log")
    tallest = max((float(r.get("pages_per_s") or 0) for s in sections for r in s["rows"]), default=0)
    if tallest:
        ax.set_ylim(top=tallest * 2.5)  # room for the value labels
    ax.set_ylabel("pages/s (log scale; higher is better)")
    ax.set_title(sections[0]["title"] if sections else "")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    args = parse_args()
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        png = h.RESULTS_DIR / ("throughput.png" if args.name == "latest" else f"{args.name}_throughput.png")
        chart(saved["sections"], png)
        print(f"wrote {png}")
        return 0
    info = h.machine_info()
    corpus = Corpus.generate(seed=args.seed, videos=args.videos, comments=args.comments)
    h.RESULTS_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-"))
    job = h.Job.build(corpus, workdir)
    print(f"# scraper benchmarks: {len(corpus.videos)} videos, {job.comments:,} comments, {job.pages:,} pages")
    print(f"# {h.machine_line(info)}")
    print(f"# modes: {' '.join(args.modes)}; work dir {workdir}", flush=True)
    sections = []
    for latency in args.latency_ms:
        with h.Simulator(videos=args.videos, comments=args.comments, seed=args.seed, latency_ms=latency) as sim:
            job.bind(sim.url)
            print(f"\n## latency {latency:g} ms ({sim.url})", flush=True)
            if not args.no_warmup:
                warm = h.run_mode("bare", job, sim, timeout_s=args.timeout)
                print(f"  warm-up (bare, untimed): {warm['status']} in {warm['wall_s']:.1f}s", flush=True)
            rows = []
            for mode in args.modes:
                runs = []
                for _ in range(args.repeat):
                    run = h.run_mode(
                        mode, job, sim, timeout_s=args.timeout, extra_args=mode_args(mode, args), log_dir=workdir
                    )
                    runs.append(run)
                    shown = f"{run['pages_per_s']:,.0f} pages/s" if run["status"] == "ok" else run.get("failure", "")
                    print(
                        f"  {mode:20s} {run['status']:6s} fetch {run['fetch_s']:7.2f}s  wall {run['wall_s']:7.2f}s  "
                        f"cpu {run['cpu_ms_per_page']:6.2f} ms/page  {shown}",
                        flush=True,
                    )
                rows.append(h.median_row(runs))
            sections.append(
                {
                    "latency_ms": latency,
                    "rows": rows,
                    "title": f"{job.pages:,} pages / {job.comments:,} comments, 2 x {args.scraper_concurrency} scraper coroutines",
                }
            )
            print()
            print(table(rows))
            print()
            print("\n".join(ratios(rows)), flush=True)

    stem = args.name
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    md = [
        f"# Benchmark results: `{command.strip()}`",
        "",
        f"- machine: {h.machine_line(info)}",
        f"- redis-server {info['redis_server']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"- corpus: seed {args.seed}, {len(corpus.videos)} videos, {job.comments:,} comments, {job.pages:,} pages "
        f"(20 comments a page); repeat {args.repeat} (median)",
        f"- scraper: `scraper work --processes {args.scraper_processes} --concurrency {args.scraper_concurrency} --burst --rate-limit 0`",
        "- pages/s and comments/s are over the fetching command's wall time (for `scraper`: the `scraper work` step, "
        "its start-up and burst exit included); end-to-end adds everything else the mode needs (for `scraper`: "
        "redis-server start to export done). Client CPU is every process of the mode's tree, Redis included.",
        "- noisy: 2 cores shared by the client, the simulator and other engineers' test runs at the same time.",
        "",
    ]
    for section in sections:
        md += [f"## Latency {section['latency_ms']:g} ms", "", table(section["rows"]), "", *ratios(section["rows"]), ""]
    md.append(f"![throughput]({stem}_throughput.png)" if stem != "latest" else "![throughput](throughput.png)")
    (h.RESULTS_DIR / f"{stem}.md").write_text("\n".join(md) + "\n")
    payload = {"command": command, "machine": info, "args": vars(args), "sections": sections}
    (h.RESULTS_DIR / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    png = h.RESULTS_DIR / ("throughput.png" if stem == "latest" else f"{stem}_throughput.png")
    chart(sections, png)
    print(f"\nwrote {h.RESULTS_DIR / (stem + '.md')}, {stem}.json, {png.name}")
    failed = [r["mode"] for s in sections for r in s["rows"] if r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"(took {time.time() - started:.0f}s)")
    sys.exit(code)
