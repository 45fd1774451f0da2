"""`scraper report`: per video of the list, did the crawl get every comment?"""

from __future__ import annotations

import argparse

from scraper.commands.common import Subparsers, common_flags


def register(sub: Subparsers) -> None:
    p = sub.add_parser("report", help="per video: complete, incomplete (and why), closed, deleted or pending")
    common_flags(p, target=True)
    p.add_argument("--json", action="store_true", help='print {"videos": [...], "summary": {status: count}}')
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from typing import Any  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    from scraper.commands import common  # noqa: PLC0415
    from scraper.report import build_report, render  # noqa: PLC0415

    settings = common.settings_for(args)

    async def go(client: Any) -> int:
        document, code = await build_report(client, common.keys(settings))
        print(orjson.dumps(document).decode() if args.json else render(document))
        return code

    return common.with_redis(settings, common.redis_url(settings), go)
