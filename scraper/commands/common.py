"""What the commands share: common flags, building the settings once, a Redis client.

Paths: every relative path in the configuration (``videos``, ``output_dir``,
``redis.state_dir``, from a TOML file or the environment) is relative to the
project root, the folder holding the config dir; a path given as a flag is
relative to the current directory, like any command-line path. So one project
has one embedded Redis and one output folder wherever a command runs from.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from scraper.errors import UserError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from scraper.keys import TargetKeys
    from scraper.settings import Settings
    from scraper.videos import VideoList

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction
TARGET_HELP = "target name: config/targets/NAME.toml"


def common_flags(parser: argparse.ArgumentParser, *, target: bool | str = False, repeat: bool = False) -> None:
    """``repeat``: a sub-command's copy of its parent's flags (accepted before or
    after the sub-command; a default here would overwrite the parent's value)."""
    default: Any = argparse.SUPPRESS if repeat else None
    parser.add_argument(
        "--config-dir",
        default=default,
        help="folder with scraper.toml and targets/; relative paths in it are relative to its parent "
        "(default: ./config, else the one beside the package)",
    )
    parser.add_argument(
        "--redis-url",
        default=default,
        help="redis://[:password@]host:port/db, rediss:// or unix:///path (default: the embedded redis-server)",
    )
    parser.add_argument("--log-level", default=default, help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-format", default=default, choices=["text", "json"], help="log line format")
    if target:
        # Checked by the command (target_required) so that the message can say more than argparse's.
        required = "" if target == "optional" else " (required)"
        parser.add_argument("--target", default=default, help=TARGET_HELP + required)


def work_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--processes", type=int, help="worker processes (default from config: 2; at most 4 x CPU cores)"
    )
    parser.add_argument(
        "--force", action="store_true", dest="force_processes", help="allow more than 4 processes per CPU core"
    )
    parser.add_argument("--concurrency", type=int, help="consumer coroutines per process (default 128)")
    parser.add_argument(
        "--output-dir",
        help="where shards go: DIR/<target>/<host>-<pid>-<start ms>-<random>-<n>.jsonl (default: output)",
    )
    parser.add_argument("--base-url", help="the site's base URL (default from the target's TOML)")
    parser.add_argument(
        "--rate-limit", type=float, help="requests/s to the host, all processes and pods together; 0 = none"
    )
    parser.add_argument("--rate-burst", type=int, help="requests the limiter lets through at once (at least 1)")
    parser.add_argument("--inflight-per-host", type=int, help="cluster-wide cap on requests in flight; 0 = none")
    parser.add_argument("--batch-size", type=int, help="claimed pages held beyond the coroutines (default 32)")
    parser.add_argument("--max-attempts", type=int, help="attempts before a page becomes a dead letter (default 5)")
    parser.add_argument("--backoff-base", type=float, dest="backoff_base_s", help="first retry delay, seconds")
    parser.add_argument(
        "--claim-idle", type=float, dest="claim_idle_s", help="seconds before a silent consumer's pages are taken over"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        dest="drain_timeout_s",
        help="seconds to finish in-flight pages on SIGTERM (default 25)",
    )
    parser.add_argument("--timeout", type=float, dest="timeout_s", help="per-request timeout, seconds (default 20)")
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics for this pod on this port (1-65535)"
    )
    parser.add_argument("--fsync", action="store_true", default=None, help="fsync each flushed batch of output")


def _flag_path(value: Any) -> str | None:
    """A path given on the command line is relative to the current directory (a bucket URL is no path)."""
    from scraper.objectstore import is_bucket_url  # noqa: PLC0415

    if not isinstance(value, str):
        return None
    if is_bucket_url(value):
        return value
    return str(Path(value).expanduser().absolute())


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags that were given, mapped onto the settings tree."""

    def get(name: str) -> Any:
        return getattr(args, name, None)

    return {
        "redis": {"url": get("redis_url")},
        "log": {"level": get("log_level"), "format": get("log_format")},
        "target": {
            "base_url": get("base_url"),
            "videos": _flag_path(get("videos")),
            "rate_limit": get("rate_limit"),
            "rate_burst": get("rate_burst"),
            "simulate": get("simulate"),
        },
        "http": {"timeout_s": get("timeout_s")},
        "worker": {
            "processes": get("processes"),
            "concurrency": get("concurrency"),
            "output_dir": _flag_path(get("output_dir")),
            "batch_size": get("batch_size"),
            "max_attempts": get("max_attempts"),
            "backoff_base_s": get("backoff_base_s"),
            "claim_idle_s": get("claim_idle_s"),
            "drain_timeout_s": get("drain_timeout_s"),
            "metrics_port": get("metrics_port"),
            "fsync": get("fsync"),
            "inflight_per_host": get("inflight_per_host"),
            "heartbeat_dir": _flag_path(get("heartbeat_dir")),
        },
    }


def target_required(args: argparse.Namespace, command: str) -> str:
    target = getattr(args, "target", None)
    if not target:
        raise UserError(f"{command}: --target NAME is required (the targets are config/targets/NAME.toml)")
    return str(target)


def settings_for(args: argparse.Namespace, *, target: bool = True) -> Settings:
    """The one place a command's settings are built (and validated), then logging set up."""
    from scraper import redact  # noqa: PLC0415
    from scraper.logs import setup_logging  # noqa: PLC0415
    from scraper.settings import load_settings  # noqa: PLC0415

    name = target_required(args, args.command) if target else None
    settings = load_settings(
        name,
        config_dir=getattr(args, "config_dir", None),
        overrides=overrides(args),
        force=bool(getattr(args, "force_processes", False)),
    )
    if settings.http.cookie:
        redact.add_secret(settings.http.cookie)
    setup_logging(settings.log.level, settings.log.format)
    return settings


def output_dir(settings: Settings) -> Settings:
    """The output folder, absolute (children may run elsewhere) and writable.

    An ``s3://`` output has nothing local to create or probe: each worker
    checks its credentials when its sink opens."""
    from scraper.objectstore import is_bucket_url  # noqa: PLC0415

    if is_bucket_url(settings.worker.output_dir):
        return settings
    output = settings.resolve(os.path.expanduser(settings.worker.output_dir))
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{output}: output directory not writable: {exc.strerror}") from None
    return replace(settings, worker=replace(settings.worker, output_dir=str(output)))


def load_videos(settings: Settings) -> VideoList:
    """The whole list, checked, before Redis is touched; an empty list is bad input."""
    from scraper.coordinator import load_videos as read  # noqa: PLC0415

    videos = read(settings)
    if not videos.videos:
        raise UserError(
            f"{settings.resolve(settings.target.videos)}: no videos in the list "
            "(one BV id, av id or video URL per line)"
        )
    return videos


def check_base_url(base_url: str) -> None:
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"base URL {base_url!r}: expected http(s)://host[:port]")


def redis_url(settings: Settings) -> str:
    from scraper import redis_conn  # noqa: PLC0415

    return redis_conn.resolve_url(settings.redis.url, settings.resolve(settings.redis.state_dir))


async def client(settings: Settings, url: str) -> aioredis.Redis:
    from scraper import redis_conn  # noqa: PLC0415

    connected = redis_conn.cli_client(url)
    try:
        await redis_conn.wait_for_redis(connected, url, settings.redis.connect_timeout_s, fail_fast=True)
    except BaseException:
        await connected.aclose()
        raise
    return connected


def with_redis(settings: Settings, url: str, body: Callable[[Any], Awaitable[int]]) -> int:
    """Run one command's body with a connected client, on uvloop, then close it."""
    import uvloop  # noqa: PLC0415

    async def go() -> int:
        connected = await client(settings, url)
        try:
            return await body(connected)
        finally:
            await connected.aclose()

    return uvloop.run(go())


def keys(settings: Settings) -> TargetKeys:
    from scraper.keys import TargetKeys  # noqa: PLC0415

    return TargetKeys(settings.target.name, settings.redis.key_prefix)
