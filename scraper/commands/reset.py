"""`scraper reset`: start a target over (say, to fetch the comments posted since)."""

from __future__ import annotations

import argparse
from typing import Any

from scraper.commands.common import Subparsers, common_flags


def register(sub: Subparsers) -> None:
    p = sub.add_parser("reset", help="forget a target's queue, dedup set, counters and dead letters")
    common_flags(p, target=True)
    p.add_argument("--force", action="store_true", help="even while workers are running")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scraper.commands import common  # noqa: PLC0415
    from scraper.errors import UserError  # noqa: PLC0415
    from scraper.keys import target_index_key  # noqa: PLC0415
    from scraper.liveness import is_alive  # noqa: PLC0415
    from scraper.stats import read_stats  # noqa: PLC0415

    settings = common.settings_for(args)
    url = common.redis_url(settings)

    async def go(client: Any) -> int:
        keys = common.keys(settings)
        consumers = (await read_stats(client, keys))["consumers"]
        live = [c for c in consumers if is_alive(c, settings.worker.heartbeat_s)]
        if live and not args.force:
            raise UserError(
                f"reset {keys.target}: {len(live)} workers are running (e.g. {live[0]['name']}); "
                "stop them first or pass --force"
            )
        from scraper.ledger import delete_ledgers  # noqa: PLC0415

        deleted = await client.delete(*keys.all()) + await delete_ledgers(client, keys)
        await client.srem(target_index_key(keys.prefix), keys.target)
        print(f"reset {keys.target}: {deleted} keys deleted; output shards under the output dir are untouched")
        return 0

    return common.with_redis(settings, url, go)
