"""`scraper redis status|stop|url`: the project's embedded redis-server."""

from __future__ import annotations

import argparse

from scraper.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    p = sub.add_parser("redis", help="the embedded redis-server: status, stop, or url (starts it)")
    p.add_argument(
        "action", choices=["status", "stop", "url"], help="status: exit 0 if running; stop; url: start if needed, print"
    )
    p.add_argument("--config-dir", help="folder with scraper.toml; the server's state is in <its parent>/.state")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scraper import redis_conn  # noqa: PLC0415
    from scraper.logs import setup_logging  # noqa: PLC0415
    from scraper.settings import load_settings  # noqa: PLC0415

    settings = load_settings(None, config_dir=args.config_dir)
    setup_logging(settings.log.level, settings.log.format)
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
