"""`scraper exporter`: queue-level Prometheus gauges from Redis."""

from __future__ import annotations

import argparse

from scraper.commands.common import Subparsers, common_flags


def register(sub: Subparsers) -> None:
    p = sub.add_parser("exporter", help="serve queue-level Prometheus gauges from Redis")
    common_flags(p)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--port", type=int, default=9101, help="port to listen on, 1-65535 (default 9101)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvloop  # noqa: PLC0415

    from scraper.commands import common  # noqa: PLC0415
    from scraper.exporter import serve_exporter  # noqa: PLC0415
    from scraper.settings import Bound, check_number  # noqa: PLC0415

    check_number("--port", args.port, Bound(1, 65535))
    settings = common.settings_for(args, target=False)
    url = common.redis_url(settings)
    return uvloop.run(serve_exporter(settings, url, args.host, args.port))
