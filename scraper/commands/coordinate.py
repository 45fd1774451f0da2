"""`scraper coordinate`: enqueue the first comment page of every video in the list."""

from __future__ import annotations

import argparse
from typing import Any

from scraper.commands.common import Subparsers, common_flags


def register(sub: Subparsers) -> None:
    p = sub.add_parser("coordinate", help="enqueue the first comment page of every video in the list")
    common_flags(p, target=True)
    p.add_argument("--videos", help="video list file (default from the target's TOML)")
    p.add_argument("--base-url", help="base URL the workers should crawl (stored for them)")
    p.add_argument("--wait", action="store_true", help="then show progress until the crawl is done")
    refresh_flags(p)
    p.set_defaults(handler=run)


def refresh_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refresh",
        action="store_true",
        help="fetch only what is new since each video's last complete crawl (videos never complete: in full); "
        "refused (exit 2) while a crawl of the target is queued, in flight or delayed",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="with --refresh: rescan every root page and refetch the threads whose reply count grew",
    )


def check_refresh_flags(args: argparse.Namespace) -> None:
    from scraper.errors import UserError  # noqa: PLC0415

    if args.deep and not args.refresh:
        raise UserError("--deep only makes sense with --refresh")


def run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from scraper import redis_conn  # noqa: PLC0415
    from scraper.commands import common  # noqa: PLC0415
    from scraper.coordinator import coordinate  # noqa: PLC0415
    from scraper.progress import show_progress  # noqa: PLC0415
    from scraper.stats import read_stats  # noqa: PLC0415

    check_refresh_flags(args)
    settings = common.settings_for(args)
    videos = common.load_videos(settings)  # all input errors before Redis is touched
    url = common.redis_url(settings)
    keys = common.keys(settings)

    async def go(client: Any) -> int:
        summary = await coordinate(client, settings, videos, refresh=args.refresh, deep=args.deep)
        if args.refresh:
            print(
                f"coordinate {settings.target.name}: {'deep ' if args.deep else ''}refresh of {summary.videos} videos: "
                f"{summary.refreshed} from their watermark, {summary.enqueued - summary.refreshed} in full "
                f"({summary.duplicates} duplicates dropped) into {redis_conn.describe(url)}"
            )
        else:
            print(
                f"coordinate {settings.target.name}: {summary.lines} videos read, "
                f"{summary.duplicates} duplicates dropped, "
                f"{summary.enqueued} tasks enqueued ({summary.videos - summary.enqueued} already known) "
                f"into {redis_conn.describe(url)}"
            )
        if args.wait:
            stop = asyncio.Event()
            watcher = asyncio.create_task(show_progress(client, keys, stop))
            while not (await read_stats(client, keys))["done"]:
                await asyncio.sleep(1.0)
            stop.set()
            await watcher
        return 0

    return common.with_redis(settings, url, go)
