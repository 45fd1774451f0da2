"""`scraper stats`: queue depth, in flight, progress, rates, consumers; `--watch` live."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from scraper.commands.common import Subparsers, common_flags

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from scraper.keys import TargetKeys
    from scraper.settings import Settings


def register(sub: Subparsers) -> None:
    p = sub.add_parser("stats", help="queue depth, in flight, progress, rates, consumers")
    common_flags(p, target="optional")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument(
        "--watch", action="store_true", help="live view refreshed every second (every target without --target)"
    )
    p.add_argument("--frames", type=int, default=0, help=argparse.SUPPRESS)  # bound --watch (tests)
    p.set_defaults(handler=run)


async def _all_targets(client: aioredis.Redis, settings: Settings) -> list[dict[str, Any]]:
    from scraper.keys import TargetKeys  # noqa: PLC0415
    from scraper.stats import list_targets, read_stats  # noqa: PLC0415

    targets = await list_targets(client, settings.redis.key_prefix)
    return [await read_stats(client, TargetKeys(t, settings.redis.key_prefix)) for t in targets]


async def _watch_targets(client: aioredis.Redis, settings: Settings, frames: int) -> None:
    """Every target's row, redrawn in place on a terminal (rich), one frame after another elsewhere."""
    import asyncio  # noqa: PLC0415
    import contextlib  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415
    from rich.live import Live  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from scraper.dashboard import render_targets  # noqa: PLC0415

    live = Live(console=Console(highlight=False), auto_refresh=False) if sys.stdout.isatty() else None
    with live if live is not None else contextlib.nullcontext():
        shown = 0
        while True:
            frame = render_targets(await _all_targets(client, settings))
            if live is not None:
                live.update(Text(frame), refresh=True)
            else:
                print(frame, flush=True)
            shown += 1
            if frames and shown >= frames:
                return
            await asyncio.sleep(1.0)


async def _limiter_host(client: aioredis.Redis, settings: Settings, keys: TargetKeys) -> str | None:
    from urllib.parse import urlparse  # noqa: PLC0415

    stored = await client.hget(keys.meta, "base_url")
    base_url = stored.decode() if stored else settings.target.base_url
    return urlparse(base_url).netloc or None  # its limiter shows when the workers use one


def run(args: argparse.Namespace) -> int:
    import orjson  # noqa: PLC0415

    from scraper.commands import common  # noqa: PLC0415
    from scraper.dashboard import render_stats, render_targets, watch  # noqa: PLC0415
    from scraper.settings import NON_NEGATIVE, check_number  # noqa: PLC0415
    from scraper.stats import read_stats  # noqa: PLC0415

    check_number("--frames", args.frames, NON_NEGATIVE)
    settings = common.settings_for(args, target=args.target is not None)
    url = common.redis_url(settings)

    async def go(client: Any) -> int:
        if args.target is None:
            if args.watch:
                await _watch_targets(client, settings, args.frames)
                return 0
            rows = await _all_targets(client, settings)
            print(orjson.dumps({"targets": rows}).decode() if args.json else render_targets(rows))
            return 0
        keys = common.keys(settings)
        host = await _limiter_host(client, settings, keys)
        if args.watch:
            await watch(client, keys, limiter_host=host, frames=args.frames)
            return 0
        stats = await read_stats(client, keys, limiter_host=host)
        print(orjson.dumps(stats).decode() if args.json else render_stats(stats))
        return 0

    return common.with_redis(settings, url, go)
