"""Mode `scraper`: this project's whole path, each step a subprocess, as a user runs it.

private redis-server (no persistence, free port) -> ``scraper coordinate``
(the video list) -> ``scraper work --processes N --concurrency M --burst
--rate-limit 0`` (the target's polite default of 2 req/s is for the real
site) -> ``scraper export`` (dedup by rpid) -> ``scraper stats --json``.
The crawl time (``crawl_s``) is the ``work`` step; the harness's wall time
covers every step, Redis included. Each step is measured (wall, CPU, RSS of
its process tree); the largest RSS of a single worker child is reported.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _crawl
from _procs import PrivateRedis, become_subreaper, install_cleanup, repo_root, run_measured, scraper_command


def main() -> None:
    args = _crawl.arguments(
        __doc__,
        processes=(int, 2, "worker processes"),
        concurrency=(int, 128, "consumer coroutines per process"),
        batch_size=(int, 0, "claimed pages held beyond the coroutines (0: the config's)"),
        log_level=(str, "WARNING", "the scraper's log level"),
        one_command=(int, 0, "1: `scraper run` (coordinate + work + export in one process) instead of the three"),
    )
    install_cleanup()
    become_subreaper()  # `scraper work`'s forkserver outlives it by a few ms: reaped here, its CPU counted
    started = time.perf_counter()
    config_dir = str(repo_root() / "config")
    with tempfile.TemporaryDirectory(prefix="bench-scraper-") as tmp:
        tmpdir = Path(tmp)
        env = dict(os.environ)
        env["SCRAPER_WORKER_HEARTBEAT_DIR"] = str(tmpdir / "heartbeat")  # not the machine's shared one
        redis = PrivateRedis(tmpdir / "redis").start()
        cli = scraper_command()
        common = [
            "--target",
            "video-list",
            "--config-dir",
            config_dir,
            "--redis-url",
            redis.url,
            "--log-level",
            args.log_level,
        ]
        steps: dict[str, dict[str, object]] = {}
        outputs: dict[str, str] = {}
        failed = None
        e2e_s = None
        try:
            plan = [
                ("coordinate", ["coordinate", *common, "--videos", args.videos, "--base-url", args.base_url]),
                (
                    "work",
                    [
                        "work",
                        *common,
                        "--processes",
                        str(args.processes),
                        "--concurrency",
                        str(args.concurrency),
                        "--burst",
                        "--output-dir",
                        str(tmpdir / "out"),
                        "--base-url",
                        args.base_url,
                        "--rate-limit",
                        "0",
                        *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
                    ],
                ),
                ("export", ["export", *common, "--output-dir", str(tmpdir / "out"), "--output", args.output]),
                ("stats", ["stats", *common, "--json"]),
            ]
            if args.one_command:
                # The README's one command: the same three steps in one process.
                run = [
                    "run",
                    *common,
                    "--videos",
                    args.videos,
                    "--base-url",
                    args.base_url,
                    "--simulate",
                    "never",
                    "--processes",
                    str(args.processes),
                    "--concurrency",
                    str(args.concurrency),
                    "--rate-limit",
                    "0",
                    "--output-dir",
                    str(tmpdir / "out"),
                    "--output",
                    args.output,
                ]
                plan = [("work", run), plan[-1]]
            for name, argv in plan:
                measured, output = run_measured([*cli, *argv], cwd=tmp, env=env)
                outputs[name] = output
                # Each step's own output, for the mode's log (the harness keeps it with --log_dir).
                tail = "\n".join(output.strip().splitlines()[-40:])
                print(f"--- scraper {name}: exit {measured.returncode}, {measured.wall_s:.2f}s\n{tail}", flush=True)
                step = measured.as_dict()
                if name == "work":
                    children = measured.children()
                    step["worker_children"] = len(children)
                    step["worker_child_max_rss_mb"] = round(max((i.max_rss for i in children), default=0) / 2**20, 1)
                    step["worker_child_max_pss_mb"] = round(max((i.max_pss for i in children), default=0) / 2**20, 1)
                    step["worker_child_cpu_s"] = round(sum(i.cpu_s for i in children), 3)
                steps[name] = step
                if name == "export" or (name == "work" and args.one_command):
                    e2e_s = time.perf_counter() - started  # what a user waits for; stats is the benchmark's
                if measured.returncode != 0:
                    failed = f"scraper {name} exited {measured.returncode}: {output.strip()[-2000:]}"
                    break
        finally:
            redis.stop()
        steps["redis"] = {"cpu_s": round(redis.cpu_s, 3), "max_rss_mb": round(redis.max_rss_mb, 1)}
        stats = {}
        if "stats" in outputs and not failed:
            try:
                stats = json.loads(outputs["stats"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                stats = {}
    if failed:
        print(failed, file=sys.stderr)
    _crawl.report(
        int(stats.get("pages_done", 0)) + int(sum((stats.get("final") or {}).values())),
        started,
        crawl_s=steps.get("work", {}).get("wall_s"),
        e2e_s=round(e2e_s, 4) if e2e_s else None,
        errors=int(stats.get("dead", 0)) + (1 if failed else 0),
        retries=stats.get("retries"),
        steps=steps,
        processes=args.processes,
        concurrency=args.concurrency,
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
