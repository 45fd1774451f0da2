"""How `scraper work` scales: pages/s over processes x concurrency at 50 ms latency.

    .venv/bin/python benchmarks/scaling.py
    .venv/bin/python benchmarks/scaling.py --processes 1 2 --concurrency 64 256

Beside each cell: the Little's-law limit, concurrency x processes / latency
(each coroutine holds one request for at least the latency), and the share of
it reached. Past the machine's CPU the limit is out of reach: a `bare` row (one
uvloop process, 256 workers, no Redis) shows where one process's CPU ends.

One simulator (127.0.0.1, its own process) serves a corpus large enough for
the biggest cell and is warmed once. Each cell crawls the first videos of
that corpus, sized so the cell takes about ``--cell-seconds``: pages =
min(Little's-law limit, ``--cpu-cap`` pages/s) x seconds. Every cell's output
is checked exact against its videos' comments. Writes ``results/scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import _harness as h
import _machine

from scraper.simulator.corpus import Corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--cell-seconds", type=float, default=6.0, help="aimed duration of one cell's crawl")
    parser.add_argument("--cpu-cap", type=float, default=2000.0, help="pages/s assumed at most when sizing cells")
    parser.add_argument("--comments", type=int, default=500_000, help="corpus the cells draw from (~25k pages)")
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare reference row")
    parser.add_argument("--render", metavar="JSON", help="only rewrite scaling.md from a scaling.json")
    parser.add_argument("--force", action="store_true", help="write results even from a dirty tree (the file says so)")
    args = parser.parse_args()
    h.become_subreaper()  # orphans of the measured commands (a forkserver) are reaped and counted
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        write_report(saved["cells"], saved["machine"], saved.get("command", ""), saved.get("notes", {}))
        return 0

    info = h.machine_info()
    if info["dirty"] and not args.force:
        _machine.refuse_dirty(False)
    corpus = Corpus.generate(seed=args.seed, videos=args.videos, comments=args.comments)
    latency_s = args.latency_ms / 1000.0
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-scaling-"))
    print(f"# scaling at {args.latency_ms:g} ms; {h.machine_line(info)}", flush=True)
    cells: list[dict[str, Any]] = []
    with h.Simulator(videos=args.videos, comments=args.comments, seed=args.seed, latency_ms=args.latency_ms) as sim:
        full = h.Job.build(corpus, workdir / "full")
        full.bind(sim.url)
        warm = h.run_mode("bare", full, sim, timeout_s=args.timeout)
        print(f"  warm-up over {full.pages:,} pages: {warm['status']}", flush=True)
        jobs: dict[int, h.Job] = {}

        def job_for(pages: int) -> h.Job:
            n = h.videos_for_pages(corpus, pages)
            if n not in jobs:
                jobs[n] = h.Job.build(h.sub_corpus(corpus, n), workdir / f"v{n}")
                jobs[n].bind(sim.url)
            return jobs[n]

        grid = [(p, c) for p in args.processes for c in args.concurrency]
        if not args.no_bare:
            grid.append((0, 256))  # the bare reference
        for processes, concurrency in grid:
            bare = processes == 0
            limit = concurrency * max(processes, 1) / latency_s
            job = job_for(int(min(limit, args.cpu_cap) * args.cell_seconds))
            if bare:
                row = h.run_mode(
                    "bare", job, sim, timeout_s=args.timeout, extra_args=["--processes", "1", "--workers", "256"]
                )
            else:
                row = h.run_mode(
                    "scraper",
                    job,
                    sim,
                    timeout_s=args.timeout,
                    extra_args=["--processes", str(processes), "--concurrency", str(concurrency)],
                )
            cell = {
                "processes": processes,
                "concurrency": concurrency,
                "limit": limit,
                **{k: v for k, v in row.items() if k != "result"},
            }
            cells.append(cell)
            label = "bare (1 process, no Redis)" if bare else f"{processes} x {concurrency}"
            shown = (
                f"{row['fetch_pages_per_s']:,.0f} pages/s, steady {h.fmt(row['steady_pages_per_s'])} "
                f"({100 * (row['steady_pages_per_s'] or 0) / limit:.0f}% of {limit:,.0f})"
                if row["status"] == "ok"
                else row.get("failure", "")
            )
            print(f"  {label:28s} {job.pages:6,} pages  {row['status']}  {shown}", flush=True)

    command = "python benchmarks/scaling.py " + " ".join(sys.argv[1:])
    notes = {
        "latency_ms": args.latency_ms,
        "cell_seconds": args.cell_seconds,
        "corpus_pages": corpus.expected_pages(),
    }
    h.RESULTS_DIR.mkdir(exist_ok=True)
    (h.RESULTS_DIR / "scaling.json").write_text(
        json.dumps({"command": command, "machine": info, "notes": notes, "cells": cells}, indent=1) + "\n"
    )
    write_report(cells, info, command, notes)
    return 0 if all(c["status"] == "ok" for c in cells) else 1


def write_report(cells: list[dict[str, Any]], info: dict[str, Any], command: str, notes: dict[str, Any]) -> None:
    # The machine's ceiling: the best steady rate any cell (or bare) reached in
    # this run. Below it the limit is Little's law; above it, the CPU.
    ceiling = max((c.get("steady_pages_per_s") or 0 for c in cells if c["status"] == "ok"), default=0)
    headers = [
        "processes",
        "concurrency",
        "pages",
        "work s",
        "pages/s",
        "steady pages/s",
        "Little's law c x p / L",
        "steady / Little",
        "steady / min(Little, ceiling)",
        "client CPU ms/page",
        "worker child RSS MB",
    ]
    rows = []
    for c in cells:
        ok = c["status"] == "ok"
        steady = c.get("steady_pages_per_s") or 0
        bound = min(c["limit"], ceiling) if ceiling else c["limit"]
        rows.append(
            [
                "bare" if c["processes"] == 0 else str(c["processes"]),
                str(c["concurrency"]),
                h.fmt(c["pages"]),
                h.fmt(c["fetch_s"], 2) if ok else "FAILED",
                h.fmt(c.get("fetch_pages_per_s")) if ok else "-",
                h.fmt(steady) if ok else "-",
                h.fmt(c["limit"]),
                f"{100 * steady / c['limit']:.0f}%" if ok else "-",
                (f"{100 * steady / bound:.0f}%" + (" (CPU)" if bound < c["limit"] else "")) if ok else "-",
                h.fmt(c["work_cpu_ms_per_page"] if c["processes"] else c["cpu_ms_per_page"], 2),
                h.fmt(c.get("worker_child_max_rss_mb") if c["processes"] else c["max_proc_rss_mb"]),
            ]
        )
    table = h.markdown_table(headers, rows)
    print()
    print(table)
    latency = notes.get("latency_ms", 50)
    md = [
        f"# scraper work scaling at {latency:g} ms latency: `{command.strip()}`",
        "",
        f"- machine: {h.machine_line(info)}",
        f"- each cell: `scraper work --processes P --concurrency C --burst --rate-limit 0` on the first videos of a "
        f"{notes.get('corpus_pages', 0):,}-page corpus, sized for ~{notes.get('cell_seconds', 0):g} s; "
        "output checked exact.",
        "- pages/s: over the `scraper work` step's wall time (start-up and burst exit included); steady: the median "
        "requests/s the simulator saw in the busy seconds. Little's law: C x P / latency. CPU: the work tree.",
        "- the bare row: one uvloop process, 256 workers, precomputed URLs, no Redis: one process's CPU ceiling here.",
        f"- ceiling: the best steady rate of any row of this run ({ceiling:,.0f} pages/s): past it the machine's CPU "
        "(client, simulator and Redis share 2 cores), not concurrency, is the limit; the last ratio column divides by "
        "min(Little's law, ceiling) and marks the CPU-bound cells.",
        "- noisy: 2 cores shared by client, simulator and other engineers' test runs.",
        "",
        table,
        "",
    ]
    (h.RESULTS_DIR / "scaling.md").write_text("\n".join(md))
    print(f"\nwrote {h.RESULTS_DIR / 'scaling.md'}")


if __name__ == "__main__":
    sys.exit(main())
