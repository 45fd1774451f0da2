"""Start-up latency of worker processes and of short jobs, before and after the forkserver.

    .venv/bin/python benchmarks/startup.py                  # every measure, before and after (~2 min)
    .venv/bin/python benchmarks/startup.py --what child --runs 15

Measures (each several times; the minimum is the figure to quote on a busy
box, since start-up latency only ever gets longer under load; the median is
shown too):

* ``child``: ``Process.start()`` of 2 worker children until both have the hot
  path imported (``workers.child``: aiohttp, redis, orjson, the adapter) and
  a connector built in their event loop. *before*: ``aiomultiprocess.Process``
  (spawn + its manager process); *after, cold*: ``workers.startup.
  WorkerProcess`` with the forkserver started by that first ``start()``;
  *after, warm*: the forkserver already warm (``scraper work`` warms it while
  it reads its settings). Each sample is a fresh interpreter.
* ``command``: ``scraper work --burst --processes 2`` on an empty queue:
  the whole fixed cost of the command (interpreter, imports, children, the
  burst check, exit), with ``python -c pass`` and the bare mode's imports as
  the floor.
* ``short``: a ~400-page job end to end, the `scraper` mode of run.py
  (redis-server start, ``coordinate``, ``work``, ``export``) against the
  whole run of the `bare` mode; target >= 0.5x.
* ``demo``: the README's ``scraper run --target video-list`` (simulator
  forced, private Redis): the whole command.

The checkout's modules are compiled to ``__pycache__`` first, as an
installed scraper has them (``--no-compile`` skips it; see cpu.py).

``--compare`` (default on) runs each measure with the start-up of before
issue 15 too (``_legacy_start.py``), alternating before/after runs so both
see the same machine. Writes ``results/startup.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LEGACY = BENCH_DIR / "_legacy_start.py"


def _env() -> dict[str, str]:
    """Run this checkout's code, whatever the venv's editable install points at."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{path}" if path else str(REPO), PYTHONUNBUFFERED="1")


# ---- child: in a fresh interpreter each time ------------------------------------


def probe(method: str, children: int) -> dict[str, float]:
    """Start ``children`` probe children the ``method`` way; seconds until all were ready / gone."""
    import asyncio  # noqa: PLC0415

    import aiomultiprocess  # noqa: PLC0415
    import uvloop  # noqa: PLC0415

    sys.path.insert(0, str(BENCH_DIR))
    from _startup_probe import probe_child  # noqa: PLC0415

    from workers import startup  # noqa: PLC0415

    def make() -> Any:
        if method == "before":
            return aiomultiprocess.Process(target=probe_child, loop_initializer=uvloop.new_event_loop)
        return startup.WorkerProcess(target=probe_child, loop_initializer=uvloop.new_event_loop)

    if method == "after-warm":
        startup.warm()
        warmup = make()  # wait until the server has imported: what a warmed `scraper work` finds
        warmup.start()
        warmup.aio_process.join()
    started = time.time()
    procs = [make() for _ in range(children)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.aio_process.join()
    gone = time.time() - started
    asyncio.set_event_loop(None)
    return {"started": started, "gone_s": gone}


def measure_child(method: str, children: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--probe", method, "--children", str(children)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=True,
    ).stdout
    ready = [float(line.split()[1]) for line in out.splitlines() if line.startswith("READY ")]
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    ready = [t for t in ready if t >= result["started"]]  # not the warm-up child of after-warm
    if len(ready) != children:
        raise RuntimeError(f"probe {method}: {len(ready)} of {children} children ready: {out[-500:]}")
    return {"ready_s": max(ready) - result["started"], "gone_s": result["gone_s"]}


# ---- command, short job, demo ----------------------------------------------------


def _timed(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... exited {proc.returncode}: {proc.stderr[-800:]}")
    return took


def cli(legacy: bool) -> list[str]:
    return [sys.executable, str(LEGACY)] if legacy else [sys.executable, "-m", "scraper.cli"]


def measure_command(legacy: bool, redis_url: str, tmp: Path) -> float:
    args = [
        "work",
        "--target",
        "video-list",
        "--config-dir",
        str(REPO / "config"),
        "--redis-url",
        redis_url,
        "--log-level",
        "WARNING",
        "--burst",
        "--processes",
        "2",
        "--base-url",
        "http://127.0.0.1:9",
        "--output-dir",
        str(tmp / "out"),
        "--rate-limit",
        "0",
    ]
    env = dict(_env(), SCRAPER_WORKER_HEARTBEAT_DIR=str(tmp / "heartbeat"))
    return _timed([*cli(legacy), *args], cwd=tmp, env=env)


def measure_demo(legacy: bool, redis_url: str, tmp: Path, flush: Any) -> float:
    flush()  # a fresh target each time: the demo starts from an empty queue
    args = [
        "run",
        "--target",
        "video-list",
        "--config-dir",
        str(REPO / "config"),
        "--redis-url",
        redis_url,
        "--log-level",
        "WARNING",
        "--simulate",
        "always",
        "--output",
        str(tmp / "demo.jsonl"),
        "--output-dir",
        str(tmp / "demo-out"),
    ]
    shutil.rmtree(tmp / "demo-out", ignore_errors=True)
    env = dict(_env(), SCRAPER_WORKER_HEARTBEAT_DIR=str(tmp / "heartbeat"))
    return _timed([*cli(legacy), *args], cwd=tmp, env=env)


def measure_short(runs: int, pages: int, log: Any) -> dict[str, list[float]]:
    """The `scraper` mode (before and after) and the `bare` mode on a ~``pages`` job, alternating."""
    import _harness as h  # noqa: PLC0415

    from scraper.simulator.corpus import Corpus  # noqa: PLC0415

    videos, comments = 40, 40 * 20 * (pages // 40 + 1)
    full = Corpus.generate(seed=1, videos=videos, comments=comments)
    corpus = h.sub_corpus(full, h.videos_for_pages(full, pages))
    workdir = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    job = h.Job.build(corpus, workdir)
    variants = [
        ("bare", "bare", {}),
        ("scraper, 3 commands (before)", "scraper", {"BENCH_LEGACY_START": "1"}),
        ("scraper, 3 commands (after)", "scraper", {}),
        ("scraper run (before)", "scraper-run", {"BENCH_LEGACY_START": "1"}),
        ("scraper run (after)", "scraper-run", {}),
    ]
    series: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    with h.Simulator(videos=videos, comments=comments, seed=1, latency_ms=0) as sim:
        job.bind(sim.url)
        h.run_mode("bare", job, sim)  # fill the simulator's page cache
        for _ in range(runs):
            for name, mode, env in variants:
                row = h.run_mode(mode, job, sim, extra_env=env, extra_args=h.mode_args(mode, 2, 128))
                if row["status"] != "ok":
                    raise RuntimeError(f"{name}: {row.get('failure')}")
                series[name].append(row["wall_s"])
                log(f"  short job ({job.pages} pages) {name:30s} end to end {row['wall_s']:.3f}s")
    shutil.rmtree(workdir, ignore_errors=True)
    series["pages"] = [float(job.pages)]
    return series


# ---- report -----------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "runs": len(values),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--what",
        nargs="+",
        default=["child", "command", "short", "demo"],
        choices=["child", "command", "short", "demo"],
    )
    parser.add_argument("--runs", type=int, default=7, help="samples per variant (default 7; short job: half)")
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--pages", type=int, default=400, help="size of the short job (default ~400 pages)")
    parser.add_argument("--no-compare", action="store_true", help="only the current start-up")
    parser.add_argument("--force", action="store_true", help="write results from a dirty tree")
    parser.add_argument("--name", default="startup", help="results file stem")
    parser.add_argument("--no-compile", action="store_true", help="do not compile the checkout's bytecode first")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.children)))
        return 0

    sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR / "modes")]
    import _machine  # noqa: PLC0415
    from _procs import PrivateRedis, become_subreaper  # noqa: PLC0415

    become_subreaper()

    info = _machine.refuse_dirty(args.force)
    if not args.no_compile:
        from _harness import precompile  # noqa: PLC0415

        precompile()
    window = _machine.CpuWindow().start()
    results: dict[str, Any] = {}

    def log(text: str) -> None:
        print(text, flush=True)

    legacy_variants = [False] if args.no_compare else [True, False]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        if "child" in args.what:
            methods = ["after-cold", "after-warm"] if args.no_compare else ["before", "after-cold", "after-warm"]
            samples: dict[str, dict[str, list[float]]] = {m: {"ready_s": [], "gone_s": []} for m in methods}
            for _ in range(args.runs):
                for method in methods:
                    got = measure_child(method, args.children)
                    for key, value in got.items():
                        samples[method][key].append(value)
                    log(f"  child {method:11s} ready {got['ready_s']:.3f}s  gone {got['gone_s']:.3f}s")
            results["child"] = {m: {k: summary(v) for k, v in s.items()} for m, s in samples.items()}
        if {"command", "demo"} & set(args.what):
            redis = PrivateRedis(tmp / "redis").start()
            try:
                floor = [_timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)]
                imports = [_timed([sys.executable, "-c", "import aiohttp, uvloop, orjson"]) for _ in range(args.runs)]
                results["floor"] = {
                    "python -c pass": summary(floor),
                    "import aiohttp, uvloop, orjson": summary(imports),
                }
                for what, fn in (("command", measure_command), ("demo", measure_demo)):
                    if what not in args.what:
                        continue
                    series: dict[str, list[float]] = {("before" if lg else "after"): [] for lg in legacy_variants}
                    for _ in range(args.runs):
                        for legacy in legacy_variants:
                            if what == "demo":
                                took = measure_demo(legacy, redis.url, tmp, lambda: _flush(redis.port))
                            else:
                                took = fn(legacy, redis.url, tmp)  # type: ignore[operator]
                            series["before" if legacy else "after"].append(took)
                            log(f"  {what} {'before' if legacy else 'after':6s} {took:.3f}s")
                    results["work_empty" if what == "command" else what] = {k: summary(v) for k, v in series.items()}
            finally:
                redis.stop()
        if "short" in args.what:
            series = measure_short(max(3, args.runs // 2), args.pages, log)
            pages = int(series.pop("pages")[0])
            results["short"] = {k: summary(v) for k, v in series.items()}
            results["short"]["pages"] = pages
    end = _machine.provenance()
    machine = {
        **info,
        "cpu": window.stop(),
        "loadavg_end": end["loadavg"],
        "commit_at_end": end["commit"],
        "dirty_at_end": end["dirty"],
    }
    payload = {"command": "python benchmarks/startup.py " + " ".join(sys.argv[1:]), "machine": machine, **results}
    md = render(payload)
    print("\n" + md)
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(md + "\n")
    print(f"wrote results/{args.name}.md and .json")
    return 0


def _flush(port: int) -> None:
    import redis  # noqa: PLC0415

    redis.Redis(port=port).flushall()


def render(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    changed = m.get("dirty_at_end") or m.get("commit_at_end", m["commit"]) != m["commit"]
    lines = [
        f"# Start-up: `{payload['command'].strip()}`",
        "",
        f"- commit {m['commit']}{' (DIRTY tree)' if m['dirty'] else ''}"
        f"{' (tree changed during the run)' if changed else ''}"
        f"; {m['nproc']} cores; load average "
        f"{m['loadavg']} at start, {m['loadavg_end']} at end; machine CPU busy {m['cpu'].get('busy_pct')} %, "
        f"steal {m['cpu'].get('steal_pct')} % over the run",
        "- seconds; min / median / max over the runs (start-up latency only grows under load: quote the min)",
        "- bytecode: "
        + ("compiled on the fly" if "--no-compile" in payload["command"] else "precompiled (compileall)"),
        "",
        "| measure | variant | min | median | max | runs |",
        "|---|---|---|---|---|---|",
    ]

    def row(measure: str, variant: str, s: dict[str, float]) -> None:
        lines.append(f"| {measure} | {variant} | {s['min']:.3f} | {s['median']:.3f} | {s['max']:.3f} | {s['runs']} |")

    labels = {
        "before": "before: aiomultiprocess.Process, spawn + manager",
        "after-cold": "after: forkserver started by the first child",
        "after-warm": "after: forkserver already warm",
    }
    for method, stats in (payload.get("child") or {}).items():
        row("2 children: start() until ready", labels[method], stats["ready_s"])
        row("2 children: start() until exited", labels[method], stats["gone_s"])
    for variant, stats in (payload.get("floor") or {}).items():
        row("floor", variant, stats)
    for variant, stats in (payload.get("work_empty") or {}).items():
        row("`scraper work --burst --processes 2`, empty queue", variant, stats)
    for variant, stats in (payload.get("demo") or {}).items():
        row("README demo `scraper run --target video-list` (simulated)", variant, stats)
    short = payload.get("short") or {}
    for variant, stats in short.items():
        if variant != "pages":
            row(f"~{short.get('pages')}-page job end to end", variant, stats)
    if short.get("bare"):
        lines.append("")
        for variant in [v for v in short if v.startswith("scraper")]:
            ratio = short["bare"]["median"] / short[variant]["median"]
            best = short["bare"]["min"] / short[variant]["min"]
            lines.append(
                f"- short job, {variant} / bare (speed, end to end): {ratio:.2f}x of medians, "
                f"{best:.2f}x of minima (target >= 0.5x: {'meets' if ratio >= 0.5 else 'MISSES'})"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
