"""The benchmark command: every mode, the same crawl, the same simulator, a table next to the seed's.

    .venv/bin/python benchmarks/run.py                       # the seed's job (333k comments), 0 and 50 ms, 3 repeats
    .venv/bin/python benchmarks/run.py --quick               # ~1,000 pages, 1 repeat: a smoke run (results/quick.*)
    .venv/bin/python benchmarks/run.py --modes bare scraper --latency-ms 50 --repeat 5
    .venv/bin/python benchmarks/run.py --all                 # plus the labelled variants and Scrapy (slow)

For each latency a fresh simulator (``scraper simulate``, its own process,
127.0.0.1; on a box with more than two cores pinned to a core of its own)
serves the corpus; one untimed pass of the `bare` mode renders every page
into its cache first. Then the modes run in rounds (every mode once per
round, ``--repeat`` rounds, so a change in the machine's load hits every
mode alike), each as a subprocess, measured: end-to-end wall time, the
mode's fetching interval, user+sys CPU of its whole process tree (Redis
included, the simulator's apart), PSS, and the machine's CPU busy and steal
over the run. A mode counts only if its output holds exactly the corpus's
comment ids; otherwise it is FAILED, not timed.

Every async mode runs at the scraper's shape: ``--processes P`` x
``--concurrency C`` (default 2 x 128, the config's): the oracle `bare` and
`aiomultiprocess` with P processes of C coroutines, the one-process modes
with P x C coroutines. threads (64) and processes (32) keep their own sizes.

Refuses to write results from a dirty tree unless ``--force``. Writes
``results/<name>.{md,json}`` (default ``latest``; ``--quick``: ``quick``).
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
import _machine
import _report

from scraper.simulator.corpus import Corpus


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=333_000, help="comments in the corpus (default 333000)")
    parser.add_argument("--videos", type=int, default=200, help="videos in the corpus (default 200: ~16.6k pages)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--latency-ms", type=float, nargs="+", default=[0.0, 50.0], help="simulator latencies (default 0 50)"
    )
    parser.add_argument("--modes", nargs="+", help=f"subset of: {', '.join(h.ALL_MODES)}")
    parser.add_argument("--all", action="store_true", help=f"also {', '.join(h.OPTIONAL_MODES)}")
    parser.add_argument("--quick", action="store_true", help="small corpus (20,000 comments, 24 videos), 1 repeat")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; min / median / max reported (default 3)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a mode may take before it is killed")
    parser.add_argument("--processes", type=int, default=2, help="P: the scraper's processes (and the oracle's)")
    parser.add_argument("--concurrency", type=int, default=128, help="C: coroutines per process")
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed pass that fills the simulator's cache"
    )
    parser.add_argument("--name", help="results file stem (default latest, or quick with --quick)")
    parser.add_argument("--force", action="store_true", help="write results even from a dirty tree (the file says so)")
    parser.add_argument("--no-compile", action="store_true", help="do not compile the checkout's bytecode first")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the markdown (and chart) from a results JSON")
    args = parser.parse_args()
    if args.quick:
        args.comments, args.videos = 20_000, 24
        if "--repeat" not in sys.argv:
            args.repeat = 1
    explicit = bool(args.modes)
    wanted = args.modes or (h.ALL_MODES if args.all else h.DEFAULT_MODES)
    unknown = [m for m in wanted if m not in h.MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {h.ALL_MODES}")
    args.modes = h.available_modes(wanted)
    missing = [m for m in wanted if m not in args.modes]
    if missing and explicit:
        parser.error(f"modes not available here: {missing} (pip install -e '.[bench]')")
    if missing:
        print(f"# skipped (library not installed; pip install -e '.[bench]'): {' '.join(missing)}", file=sys.stderr)
    args.name = args.name or ("quick" if args.quick else "latest")
    return args


def main() -> int:
    args = parse_args()
    h.become_subreaper()  # orphans of the measured commands (a forkserver) are reaped and counted
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        md = _report.markdown(saved)
        (h.RESULTS_DIR / f"{args.name}.md").write_text(md)
        print(md)
        return 0
    info = h.machine_info()
    if info["dirty"] and not args.force:
        _machine.refuse_dirty(False)
    if not args.no_compile:
        h.precompile()
    window = _machine.CpuWindow().start()
    corpus = Corpus.generate(seed=args.seed, videos=args.videos, comments=args.comments)
    h.RESULTS_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-"))
    job = h.Job.build(corpus, workdir)
    print(f"# scraper benchmarks: {len(corpus.videos)} videos, {job.comments:,} comments, {job.pages:,} pages")
    print(f"# {h.machine_line(info)}")
    print(f"# modes: {' '.join(args.modes)}; {args.repeat} rounds; P x C = {args.processes} x {args.concurrency}")
    print(f"# work dir {workdir}", flush=True)
    sections = []
    for latency in args.latency_ms:
        with h.Simulator(videos=args.videos, comments=args.comments, seed=args.seed, latency_ms=latency) as sim:
            pinning = _machine.pin_simulator(sim.handle.pid)
            job.bind(sim.url)
            print(f"\n## latency {latency:g} ms ({sim.url}; pinning: {pinning})", flush=True)
            if not args.no_warmup:
                warm = h.run_mode("bare", job, sim, timeout_s=args.timeout)
                print(f"  warm-up (bare, untimed): {warm['status']} in {warm['wall_s']:.1f}s", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
            for round_no in range(1, args.repeat + 1):
                for mode in args.modes:
                    run = h.run_mode(
                        mode,
                        job,
                        sim,
                        timeout_s=args.timeout,
                        log_dir=workdir,
                        extra_args=h.mode_args(mode, args.processes, args.concurrency),
                    )
                    runs[mode].append(run)
                    shown = (
                        f"{run['pages_per_s']:,.0f} pages/s e2e" if run["status"] == "ok" else run.get("failure", "")
                    )
                    print(
                        f"  [{round_no}/{args.repeat}] {mode:22s} {run['status']:6s} e2e {run['wall_s']:7.2f}s  "
                        f"fetch {run['fetch_s']:7.2f}s  cpu {run['cpu_ms_per_page']:5.2f} ms/page  "
                        f"busy {run['machine'].get('busy_pct')}%  {shown}",
                        flush=True,
                    )
            rows = [h.summarise(runs[m]) for m in args.modes]
            sections.append({"latency_ms": latency, "pinning": pinning, "rows": rows})
            print()
            print(_report.table(rows))
    end_info = _machine.provenance()
    info["cpu_over_run"] = window.stop()
    info["loadavg_at_end"] = end_info["loadavg"]
    info["commit_at_end"] = end_info["commit"]
    info["dirty_at_end"] = end_info["dirty"]
    command = ("python benchmarks/run.py " + " ".join(sys.argv[1:])).strip()
    payload = {
        "command": command,
        "machine": info,
        "args": vars(args),
        "sections": sections,
        "job": {"videos": len(corpus.videos), "comments": job.comments, "pages": job.pages, "seed": args.seed},
        "modes": {m: h.MODES[m].about for m in args.modes},
    }
    if end_info["commit"] != info["commit"] or (end_info["dirty"] and not info["dirty"]):
        print("warning: the tree changed during the run; the results file says so", file=sys.stderr)
    (h.RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    md = _report.markdown(payload)
    (h.RESULTS_DIR / f"{args.name}.md").write_text(md)
    print("\n" + md)
    print(f"wrote {h.RESULTS_DIR / (args.name + '.md')} and {args.name}.json")
    failed = [r["mode"] for s in sections for r in s["rows"] if r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"(took {time.time() - started:.0f}s)")
    sys.exit(code)
