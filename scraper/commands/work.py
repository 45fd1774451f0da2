"""`scraper work`: the supervisor and its worker processes."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from scraper.commands.common import Subparsers, common_flags, work_flags

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from scraper.keys import TargetKeys
    from scraper.settings import Settings

log = logging.getLogger("scraper")


def register(sub: Subparsers) -> None:
    p = sub.add_parser("work", help="run worker processes that claim and crawl pages")
    common_flags(p, target=True)
    work_flags(p)
    p.add_argument("--burst", action="store_true", help="exit 0 once nothing is queued, delayed or pending")
    p.set_defaults(handler=run)


def child_spec(settings: Settings, url: str, burst: bool) -> Any:
    from workers.spec import ChildSpec  # noqa: PLC0415

    return ChildSpec(settings=settings, redis_url=url, burst=burst)


async def nothing_to_do(client: aioredis.Redis, keys: TargetKeys) -> bool:
    """Nothing queued, in flight or waiting for a retry: workers would only start and stop."""
    from scraper.queue import read_counts  # noqa: PLC0415

    counts = await read_counts(client, keys)
    return counts.length == 0 and counts.delayed == 0 and counts.in_flight == 0


async def coordinated_base_url(client: aioredis.Redis, settings: Settings, explicit: bool) -> Settings:
    """Workers crawl what the coordinator set up, unless told otherwise."""
    from scraper.commands.common import keys  # noqa: PLC0415

    if explicit:
        return settings
    stored = await client.hget(keys(settings).meta, "base_url")
    if stored and stored.decode() != settings.target.base_url:
        log.info("using base URL %s stored by the coordinator", stored.decode())
        # The login cookie stays bound to the configured host, whatever Redis says (issues 10, 12).
        host = settings.http.cookie_host or urlparse(settings.target.base_url).hostname or ""
        return replace(
            settings,
            target=replace(settings.target, base_url=stored.decode()),
            http=replace(settings.http, cookie_host=host),
        )
    return settings


def run(args: argparse.Namespace) -> int:
    from workers.startup import warm  # noqa: PLC0415

    warm()  # the workers' forkserver imports the hot path while we read settings (issue 15)
    import uvloop  # noqa: PLC0415

    from scraper.commands import common  # noqa: PLC0415
    from workers.supervisor import supervise  # noqa: PLC0415

    settings = common.output_dir(common.settings_for(args))
    url = common.redis_url(settings)

    async def go() -> int:
        nonlocal settings
        client = await common.client(settings, url)
        try:
            settings = await coordinated_base_url(client, settings, explicit=args.base_url is not None)
            idle = args.burst and await nothing_to_do(client, common.keys(settings))
        finally:
            await client.aclose()
        common.check_base_url(settings.target.base_url)
        if idle:
            print(f"work {settings.target.name}: nothing queued, in flight or delayed: no workers started")
            return 0
        return await supervise(child_spec(settings, url, args.burst), settings.worker.processes)

    return uvloop.run(go())
