"""`scraper health`: the liveness probe of a worker pod."""

from __future__ import annotations

import argparse

from scraper.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    p = sub.add_parser("health", help="exit 0 when this pod's worker has a fresh heartbeat (liveness probe)")
    p.add_argument("--heartbeat-dir", help="default from config: /tmp/scraper-heartbeat")
    p.add_argument("--max-age", type=float, default=30.0, help="seconds a heartbeat stays fresh (default 30)")
    p.add_argument(
        "--stall", type=float, default=120.0, help="seconds holding pages without progress = wedged (default 120)"
    )
    p.add_argument("--config-dir", help="folder with scraper.toml (default: ./config)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from scraper.settings import POSITIVE, check_number, load_settings  # noqa: PLC0415
    from workers.health import check  # noqa: PLC0415

    check_number("--max-age", args.max_age, POSITIVE)
    check_number("--stall", args.stall, POSITIVE)
    if args.heartbeat_dir:
        directory = Path(args.heartbeat_dir)
    else:
        directory = Path(load_settings(None, config_dir=args.config_dir).worker.heartbeat_dir)
    verdict = check(directory, max_age_s=args.max_age, stall_s=args.stall)
    for problem in verdict.problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    if verdict.ok:
        print(f"healthy: {len(verdict.healthy)} worker processes with a heartbeat under {args.max_age:.0f}s")
        return 0
    if not verdict.healthy and not verdict.problems:
        print(f"unhealthy: no worker heartbeat under {args.max_age:.0f}s in {directory}", file=sys.stderr)
    return 1
