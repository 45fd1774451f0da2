"""`scraper run`: coordinate, work (burst) and export in one command, with progress.

The interactive command: its progress view and closing summary replace the
workers' start/stop lines (they log at WARNING here unless ``--log-level``
is given). Exit codes: see :mod:`scraper.commands.run_summary`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scraper.commands.common import Subparsers, common_flags, work_flags

if TYPE_CHECKING:
    from pathlib import Path

    import redis.asyncio as aioredis

    from scraper.settings import Settings
    from scraper.simulator.app import RunningSimulator


def register(sub: Subparsers) -> None:
    from scraper.commands.coordinate import refresh_flags  # noqa: PLC0415

    p = sub.add_parser("run", help="coordinate, work and export in one command, with progress")
    common_flags(p, target=True)
    work_flags(p)
    p.add_argument("--videos", help="video list file (default from the target's TOML)")
    p.add_argument("--output", help="export file (default: OUTPUT_DIR/<target>.jsonl; ./<target>.jsonl for s3://)")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "excel"],
        default="jsonl",
        help="jsonl (default), csv, or excel: CSV with a UTF-8 byte-order mark that spreadsheet programs read as UTF-8",
    )
    p.add_argument(
        "--simulate",
        choices=["auto", "always", "never"],
        help="crawl the bundled simulator (auto: when the site is unreachable)",
    )
    refresh_flags(p)
    p.set_defaults(handler=run)


SIM_PREFIX = "scraper-sim"  # Redis namespace of simulated crawls: never the real target's keys


async def _maybe_simulator(
    settings: Settings, aids: list[int], rate_given: bool
) -> tuple[Settings, RunningSimulator | None]:
    """Fall back to the bundled simulator, in a namespace of its own (Redis keys and output)."""
    import secrets  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from dataclasses import replace  # noqa: PLC0415

    from scraper.reachability import reachable  # noqa: PLC0415

    mode = settings.target.simulate
    if mode == "never" or (mode == "auto" and await reachable(settings.target.base_url)):
        return settings, None
    from scraper.simulator.app import SimulatorOptions, start_simulator  # noqa: PLC0415
    from scraper.simulator.corpus import Corpus  # noqa: PLC0415

    session = secrets.token_hex(16)
    simulator = await start_simulator(SimulatorOptions(session=session), corpus=Corpus.for_aids(aids, seed=1))
    why = "as asked" if mode == "always" else f"{settings.target.base_url} is unreachable"
    output_dir = simulated_output(settings.worker.output_dir)
    banner = "=" * 72
    print(
        f"{banner}\nSIMULATED DATA: {why}: crawling the bundled simulator at {simulator.url}\n"
        f"  Redis keys under {SIM_PREFIX}:*, output under {output_dir}\n"
        "  the crawler logs in with the simulator's own session cookie (SESSDATA), not yours\n"
        f"{banner}",
        file=sys.stderr,
    )
    # The politeness limit is for the real site; the local simulator is ours
    # to hammer unless the user set a limit on the command line.
    rate = settings.target.rate_limit if rate_given else 0.0
    settings = replace(
        settings,
        target=replace(settings.target, base_url=simulator.url, rate_limit=rate),
        redis=replace(settings.redis, key_prefix=SIM_PREFIX),
        worker=replace(settings.worker, output_dir=output_dir),
        http=replace(settings.http, cookie=f"SESSDATA={session}", cookie_file=""),
    )
    return settings, simulator


def simulated_output(output_dir: str) -> str:
    """Simulated output apart from real output: ``<output>/simulated`` (a folder or a bucket prefix)."""
    from pathlib import Path  # noqa: PLC0415

    from scraper.objectstore import is_bucket_url  # noqa: PLC0415

    if is_bucket_url(output_dir):
        return output_dir.rstrip("/") + "/simulated"
    folder = Path(output_dir) / "simulated"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def default_export(settings: Settings) -> Path:
    """``<output>/<target>.jsonl``; for a bucket output, ``<target>.jsonl`` in the current folder."""
    from pathlib import Path  # noqa: PLC0415

    from scraper.objectstore import is_bucket_url  # noqa: PLC0415

    name = f"{settings.target.name}.jsonl"
    if is_bucket_url(settings.worker.output_dir):
        return Path(name).absolute()
    return Path(settings.worker.output_dir) / name


def _quiet_workers(settings: Settings, explicit_level: bool) -> Settings:
    """Worker start/stop lines are details here: the view and the summary say it."""
    from dataclasses import replace  # noqa: PLC0415

    if explicit_level or settings.log.level in ("WARNING", "ERROR"):
        return settings
    return replace(settings, log=replace(settings.log, level="WARNING"))  # the children's level


async def _work(client: aioredis.Redis, settings: Settings, url: str) -> tuple[int, float, int]:
    """Run the workers under the progress view: (supervisor's code, elapsed s, pages settled)."""
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from scraper.commands.common import keys  # noqa: PLC0415
    from scraper.commands.work import child_spec  # noqa: PLC0415
    from scraper.progress import LiveProgress  # noqa: PLC0415
    from workers.supervisor import supervise  # noqa: PLC0415

    worker = settings.worker
    async with LiveProgress(
        client, keys(settings), heartbeat_s=worker.heartbeat_s, claim_idle_s=worker.claim_idle_s
    ) as tracker:
        from workers.startup import warm  # noqa: PLC0415

        warm()  # idempotent: a no-op when it already started before coordinate
        try:
            code = await supervise(child_spec(settings, url, burst=True), worker.processes)
        finally:
            # The supervisor's handler is gone: one more Ctrl-C (the impatient second one)
            # must not kill the wrap-up that hands pages back and says what is left.
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, lambda: None)
    return code, tracker.elapsed_s, tracker.pages


def run(args: argparse.Namespace) -> int:
    import sys  # noqa: PLC0415

    from workers.startup import warm  # noqa: PLC0415

    if not sys.stderr.isatty():
        # The workers' forkserver imports the hot path during coordinate (issue 15). On a
        # terminal it starts inside the live view instead (_work): workers forked from it
        # must inherit the view's stderr relay, or their log lines cut through the view.
        warm()
    from pathlib import Path  # noqa: PLC0415

    import uvloop  # noqa: PLC0415

    from scraper.commands import common  # noqa: PLC0415
    from scraper.commands.coordinate import check_refresh_flags  # noqa: PLC0415
    from scraper.commands.handback import hand_back_dead_consumers  # noqa: PLC0415
    from scraper.commands.run_summary import RunOutcome, describe_left, per_video_summary  # noqa: PLC0415
    from scraper.commands.work import nothing_to_do  # noqa: PLC0415
    from scraper.coordinator import coordinate  # noqa: PLC0415
    from scraper.export import export  # noqa: PLC0415
    from scraper.export_sources import open_source  # noqa: PLC0415
    from scraper.queue import read_counts  # noqa: PLC0415

    check_refresh_flags(args)
    settings = common.output_dir(common.settings_for(args))
    common.check_base_url(settings.target.base_url)
    videos = common.load_videos(settings)
    url = common.redis_url(settings)

    async def go() -> int:
        nonlocal settings
        settings, simulator = await _maybe_simulator(
            settings, [v.aid for v in videos.videos], rate_given=args.rate_limit is not None
        )
        # After the fallback: a simulated run has its own keys and output folder.
        default_output = default_export(settings)
        output = Path(args.output).absolute() if args.output else default_output
        keys = common.keys(settings)
        try:
            client = await common.client(settings, url)
        except BaseException:
            if simulator is not None:
                await simulator.close()
            raise
        try:
            summary = await coordinate(client, settings, videos, refresh=args.refresh, deep=args.deep)
            returned = await hand_back_dead_consumers(client, keys)
            if returned:
                print(
                    f"run {settings.target.name}: {returned} pages held by stopped workers of this machine "
                    "are back in the queue",
                    file=sys.stderr,
                )
            idle = await nothing_to_do(client, keys)
            if idle:
                print(
                    f"run {settings.target.name}: nothing to do: every page of these {summary.videos} videos is "
                    f"already crawled (`scraper reset --target {settings.target.name}` starts over)",
                    file=sys.stderr,
                )
                code, elapsed, pages = 0, 0.0, 0
            else:
                print(
                    f"run {settings.target.name}: {summary.videos} videos, {summary.enqueued} new tasks enqueued",
                    file=sys.stderr,
                )
                code, elapsed, pages = await _work(client, _quiet_workers(settings, args.log_level is not None), url)
            if code != 0:
                # A second Ctrl-C killed the workers: hand their pages back now, not after claim_idle_s.
                await hand_back_dead_consumers(client, keys)
            counts = await read_counts(client, keys)
            videos_outcome = await per_video_summary(client, settings)
        finally:
            await client.aclose()
            if simulator is not None:
                await simulator.close()
        result = export(
            open_source(settings.worker.output_dir, settings.target.name, settings.s3),
            settings.target.name,
            output,
            args.format,
            memory_bytes=settings.worker.export_memory_mb << 20,
        )
        outcome = RunOutcome(
            target=settings.target.name,
            videos=summary.videos,
            output=str(output),
            export=result,
            pages=pages,
            elapsed_s=elapsed,
            left=describe_left(counts),
            dead=counts.dead,
            videos_outcome=videos_outcome,
            idle=idle,
        )
        for line in outcome.lines():
            print(line)
        return outcome.exit_code

    return uvloop.run(go())
