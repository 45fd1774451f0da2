"""What each CLI command does, given parsed flags. Settings are built here, once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import uvloop

from scraper import redis_conn
from scraper.errors import RuntimeFailure, UserError
from scraper.keys import TargetKeys
from scraper.logs import setup_logging
from scraper.objectstore import is_bucket_url
from scraper.settings import Settings, default_config_dir, load_settings

log = logging.getLogger("scraper")


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags that were given, mapped onto the settings tree."""

    def get(name: str) -> Any:
        return getattr(args, name, None)

    return {
        "redis": {"url": get("redis_url")},
        "log": {"level": get("log_level"), "format": get("log_format")},
        "target": {
            "base_url": get("base_url"),
            "videos": get("videos") if isinstance(get("videos"), str) else None,
            "rate_limit": get("rate_limit"),
            "rate_burst": get("rate_burst"),
            "simulate": get("simulate"),
        },
        "http": {"timeout_s": get("timeout_s")},
        "worker": {
            "processes": get("processes"),
            "concurrency": get("concurrency"),
            "output_dir": get("output_dir"),
            "batch_size": get("batch_size"),
            "max_attempts": get("max_attempts"),
            "backoff_base_s": get("backoff_base_s"),
            "claim_idle_s": get("claim_idle_s"),
            "drain_timeout_s": get("drain_timeout_s"),
            "metrics_port": get("metrics_port"),
            "fsync": get("fsync"),
            "inflight_per_host": get("inflight_per_host"),
            "heartbeat_dir": get("heartbeat_dir"),
        },
    }


def _settings(args: argparse.Namespace, *, target: bool = True) -> Settings:
    name = getattr(args, "target", None) if target else None
    settings = load_settings(name, config_dir=getattr(args, "config_dir", None), overrides=_overrides(args))
    setup_logging(settings.log.level, settings.log.format)
    return settings


def _absolute_output(settings: Settings) -> Settings:
    """Children may run elsewhere: pin relative paths to where the user ran us."""
    if is_bucket_url(settings.worker.output_dir):
        return settings  # object storage: nothing local to pin or probe
    output = Path(settings.worker.output_dir).expanduser().absolute()
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{output}: output directory not writable: {exc.strerror}") from None
    return replace(settings, worker=replace(settings.worker, output_dir=str(output)))


def _redis_url(settings: Settings) -> str:
    return redis_conn.resolve_url(settings.redis.url, settings.resolve(settings.redis.state_dir))


async def _client(settings: Settings, url: str) -> Any:
    client = redis_conn.async_client(url)
    await redis_conn.wait_for_redis(client, url, settings.redis.connect_timeout_s)
    return client


def _with_redis(settings: Settings, url: str, body: Callable[[Any], Awaitable[int]]) -> int:
    """Run one command's body with a connected client, on uvloop, then close it."""

    async def go() -> int:
        client = await _client(settings, url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return uvloop.run(go())


def _keys(settings: Settings) -> TargetKeys:
    return TargetKeys(settings.target.name, settings.redis.key_prefix)


def dispatch(args: argparse.Namespace) -> int:
    handler = {
        "coordinate": cmd_coordinate,
        "work": cmd_work,
        "export": cmd_export,
        "run": cmd_run,
        "simulate": cmd_simulate,
        "stats": cmd_stats,
        "dead": cmd_dead,
        "health": cmd_health,
        "exporter": cmd_exporter,
        "redis": cmd_redis,
        "reset": cmd_reset,
    }[args.command]
    return handler(args)


# ---- coordinate ---------------------------------------------------------


def cmd_coordinate(args: argparse.Namespace) -> int:
    from scraper.coordinator import coordinate, load_videos  # noqa: PLC0415
    from scraper.progress import show_progress  # noqa: PLC0415

    settings = _settings(args)
    videos = load_videos(settings)  # all input errors before Redis is touched
    url = _redis_url(settings)

    async def go(client: Any) -> int:
        summary = await coordinate(client, settings, videos)
        print(
            f"coordinate {settings.target.name}: {summary.lines} videos read, "
            f"{summary.duplicates} duplicates dropped, "
            f"{summary.enqueued} tasks enqueued ({summary.videos - summary.enqueued} already known) "
            f"into {redis_conn.describe(url)}"
        )
        if args.wait:
            stop = asyncio.Event()
            watcher = asyncio.create_task(show_progress(client, _keys(settings), stop))
            await _wait_done(client, _keys(settings))
            stop.set()
            await watcher
        return 0

    return _with_redis(settings, url, go)


async def _wait_done(client: Any, keys: TargetKeys) -> None:
    from scraper.stats import read_stats  # noqa: PLC0415

    while not (await read_stats(client, keys))["done"]:
        await asyncio.sleep(1.0)


# ---- work -----------------------------------------------------------------


def _child_spec(settings: Settings, url: str, burst: bool) -> Any:
    from workers.spec import ChildSpec  # noqa: PLC0415

    return ChildSpec(settings=settings, redis_url=url, burst=burst)


async def _coordinated_base_url(settings: Settings, url: str, explicit: bool) -> Settings:
    """Workers crawl what the coordinator set up, unless told otherwise."""
    if explicit:
        return settings
    client = await _client(settings, url)
    try:
        stored = await client.hget(_keys(settings).meta, "base_url")
    finally:
        await client.aclose()
    if stored and stored.decode() != settings.target.base_url:
        log.info("using base URL %s stored by the coordinator", stored.decode())
        return replace(settings, target=replace(settings.target, base_url=stored.decode()))
    return settings


def cmd_work(args: argparse.Namespace) -> int:
    from workers.supervisor import supervise  # noqa: PLC0415

    settings = _absolute_output(_settings(args))
    url = _redis_url(settings)

    async def go() -> int:
        nonlocal settings
        settings = await _coordinated_base_url(settings, url, explicit=args.base_url is not None)
        _check_base_url(settings.target.base_url)
        return await supervise(_child_spec(settings, url, args.burst), settings.worker.processes)

    return uvloop.run(go())


def _check_base_url(base_url: str) -> None:
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"base URL {base_url!r}: expected http(s)://host[:port]")


# ---- export ---------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from scraper.export import export  # noqa: PLC0415
    from scraper.export_sources import open_source  # noqa: PLC0415

    settings = _settings(args)
    source = open_source(settings.worker.output_dir, settings.target.name, settings.s3)
    summary = export(source, settings.target.name, Path(args.output), args.format)
    print(
        f"export {settings.target.name}: {summary.comments} comments -> {args.output} "
        f"({summary.shards} shards, {summary.lines} lines, {summary.duplicates} duplicates removed, "
        f"{summary.skipped} partial lines skipped)"
    )
    return 0


# ---- run ------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from scraper.coordinator import coordinate, load_videos  # noqa: PLC0415
    from scraper.export import export  # noqa: PLC0415
    from scraper.export_sources import open_source  # noqa: PLC0415
    from scraper.progress import show_progress  # noqa: PLC0415
    from scraper.reachability import reachable  # noqa: PLC0415
    from workers.supervisor import supervise  # noqa: PLC0415

    settings = _absolute_output(_settings(args))
    _check_base_url(settings.target.base_url)
    videos = load_videos(settings)
    url = _redis_url(settings)
    output = Path(args.output or Path(settings.worker.output_dir) / f"{settings.target.name}.jsonl")

    async def go() -> int:
        nonlocal settings
        simulator = None
        mode = settings.target.simulate
        if mode == "always" or (mode == "auto" and not await reachable(settings.target.base_url)):
            from scraper.simulator.app import SimulatorOptions, start_simulator  # noqa: PLC0415
            from scraper.simulator.corpus import Corpus  # noqa: PLC0415

            corpus = Corpus.for_aids([v.aid for v in videos.videos], seed=1)
            simulator = await start_simulator(SimulatorOptions(), corpus=corpus)
            why = "as asked" if mode == "always" else f"{settings.target.base_url} is unreachable"
            print(f"run: {why}: crawling the bundled simulator at {simulator.url}", file=sys.stderr)
            # The politeness limit is for the real site; the local simulator
            # is ours to hammer unless the user set a limit on the command line.
            rate = settings.target.rate_limit if args.rate_limit is not None else 0.0
            settings = replace(settings, target=replace(settings.target, base_url=simulator.url, rate_limit=rate))
        client = await _client(settings, url)
        try:
            summary = await coordinate(client, settings, videos)
            print(
                f"run {settings.target.name}: {summary.videos} videos, {summary.enqueued} tasks enqueued",
                file=sys.stderr,
            )
            stop = asyncio.Event()
            watcher = asyncio.create_task(show_progress(client, _keys(settings), stop))
            try:
                code = await supervise(_child_spec(settings, url, burst=True), settings.worker.processes)
            finally:
                stop.set()
                await watcher
            if code != 0:
                return code
        finally:
            await client.aclose()
            if simulator is not None:
                await simulator.close()
        source = open_source(settings.worker.output_dir, settings.target.name, settings.s3)
        result = export(source, settings.target.name, output, args.format)
        print(
            f"run {settings.target.name}: {result.comments} comments -> {output} "
            f"({result.duplicates} duplicates removed)"
        )
        return 0

    return uvloop.run(go())


# ---- simulate -------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from scraper.simulator.app import SimulatorOptions, run_simulator  # noqa: PLC0415

    setup_logging(args.log_level, "text")
    options = SimulatorOptions(
        seed=args.seed,
        videos=args.videos,
        comments=args.comments,
        max_page=args.max_page,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        truncate_rate=args.truncate_rate,
        bad_json_rate=args.bad_json_rate,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        reset_rate=args.reset_rate,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        ban_seconds=args.ban_seconds,
        ban_shape=args.ban_shape,
        throttle_status=args.throttle_status,
    )
    for name in ("fail_rate", "truncate_rate", "bad_json_rate", "slow_rate", "reset_rate"):
        value = getattr(options, name)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
    write_videos = Path(args.write_videos) if args.write_videos else None
    try:
        run_simulator(options, host=args.host, port=args.port, write_videos=write_videos)
    except OSError as exc:
        raise RuntimeFailure(f"simulator cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


# ---- stats ----------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    from scraper.dashboard import render_stats, render_targets, watch  # noqa: PLC0415
    from scraper.stats import list_targets, read_stats  # noqa: PLC0415

    settings = _settings(args, target=args.target is not None)
    url = _redis_url(settings)

    async def go(client: Any) -> int:
        if args.target is None:
            targets = await list_targets(client, settings.redis.key_prefix)
            rows = [await read_stats(client, TargetKeys(t, settings.redis.key_prefix)) for t in targets]
            if args.json:
                print(orjson.dumps({"targets": rows}).decode())
            else:
                print(render_targets(rows))
            return 0
        keys = _keys(settings)
        host = await _stats_limiter_host(client, settings, keys)
        if args.watch:
            await watch(client, keys, limiter_host=host, frames=args.frames)
            return 0
        stats = await read_stats(client, keys, limiter_host=host)
        print(orjson.dumps(stats).decode() if args.json else render_stats(stats))
        return 0

    return _with_redis(settings, url, go)


async def _stats_limiter_host(client: Any, settings: Settings, keys: TargetKeys) -> str | None:
    stored = await client.hget(keys.meta, "base_url")
    base_url = stored.decode() if stored else settings.target.base_url
    return urlparse(base_url).netloc or None  # its limiter shows when the workers use one


# ---- dead -----------------------------------------------------------------


def cmd_dead(args: argparse.Namespace) -> int:
    from scraper import deadletters  # noqa: PLC0415

    settings = _settings(args)
    url = _redis_url(settings)

    async def go(client: Any) -> int:
        keys = _keys(settings)
        if args.dead_command == "list":
            letters = await deadletters.list_dead(client, keys)
            if args.json:
                print(orjson.dumps(letters).decode())
            else:
                print(deadletters.render(letters))
            return 0
        if args.dead_command == "requeue":
            if not args.all and not args.ids:
                raise UserError("dead requeue: give dead-letter ids or --all")
            count = await deadletters.requeue(client, keys, None if args.all else args.ids)
            print(f"dead requeue: {count} pages back in the queue")
            return 0
        count = await deadletters.purge(client, keys)
        print(f"dead purge: {count} dead letters removed")
        return 0

    return _with_redis(settings, url, go)


# ---- health, exporter, redis ------------------------------------------------


def cmd_health(args: argparse.Namespace) -> int:
    from workers.heartbeat import fresh_heartbeats  # noqa: PLC0415

    if args.heartbeat_dir:
        directory = Path(args.heartbeat_dir)
    else:
        directory = Path(load_settings(None, config_dir=args.config_dir).worker.heartbeat_dir)
    fresh = fresh_heartbeats(directory, args.max_age)
    if fresh:
        print(f"healthy: {len(fresh)} worker processes with a heartbeat under {args.max_age:.0f}s")
        return 0
    print(f"unhealthy: no worker heartbeat under {args.max_age:.0f}s in {directory}", file=sys.stderr)
    return 1


def cmd_exporter(args: argparse.Namespace) -> int:
    from scraper.exporter import serve_exporter  # noqa: PLC0415

    settings = _settings(args, target=False)
    url = _redis_url(settings)
    return uvloop.run(serve_exporter(settings, url, args.host, args.port))


def cmd_reset(args: argparse.Namespace) -> int:
    """Start a target over (say, to fetch the comments posted since): output shards stay."""
    from scraper.keys import target_index_key  # noqa: PLC0415
    from scraper.stats import read_stats  # noqa: PLC0415

    settings = _settings(args)
    url = _redis_url(settings)

    async def go(client: Any) -> int:
        keys = _keys(settings)
        live = [c for c in (await read_stats(client, keys))["consumers"] if c["heartbeat_age_s"] < 30]
        if live and not args.force:
            raise UserError(
                f"reset {keys.target}: {len(live)} workers are running (e.g. {live[0]['name']}); "
                "stop them first or pass --force"
            )
        deleted = await client.delete(*keys.all())
        await client.srem(target_index_key(keys.prefix), keys.target)
        print(f"reset {keys.target}: {deleted} keys deleted; output shards under the output dir are untouched")
        return 0

    return _with_redis(settings, url, go)


def cmd_redis(args: argparse.Namespace) -> int:
    settings = load_settings(None, config_dir=args.config_dir)
    state_dir = settings.resolve(settings.redis.state_dir)
    if args.action == "stop":
        stopped = redis_conn.stop_embedded(state_dir)
        print("embedded redis-server stopped" if stopped else "embedded redis-server was not running")
        return 0
    if args.action == "url":
        print(redis_conn.ensure_embedded(state_dir))
        return 0
    running = redis_conn.embedded_running(state_dir)
    print(f"embedded redis-server: {'running' if running else 'not running'} (state in {state_dir / 'redis'})")
    return 0 if running else 1


__all__ = ["default_config_dir", "dispatch"]
