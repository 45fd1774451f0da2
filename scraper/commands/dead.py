"""`scraper dead list|requeue|purge`: operate the dead letters.

``--target`` and the common flags are accepted before or after the
sub-command (``dead --target X list`` and ``dead list --target X``).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from scraper.commands.common import Subparsers, common_flags

_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+\.\d*(e-?\d+)?")
_TEXT_FIELDS = {"id", "fingerprint", "task", "error", "reason", "url"}  # strings even when they look numeric

_parser: argparse.ArgumentParser | None = None


def register(sub: Subparsers) -> None:
    global _parser
    p = sub.add_parser("dead", help="list, requeue or purge dead letters")
    common_flags(p, target=True)
    dead = p.add_subparsers(dest="dead_command", metavar="{list,requeue,purge}", parser_class=type(p))
    d = dead.add_parser("list", help="every dead letter: page, attempts, reason, last error")
    d.add_argument("--json", action="store_true", help="one JSON array (numbers as numbers)")
    common_flags(d, target=True, repeat=True)
    d = dead.add_parser("requeue", help="put dead pages back in the queue with their attempts reset")
    d.add_argument("--all", action="store_true", help="every dead letter")
    d.add_argument("ids", nargs="*", help="dead-letter ids from `dead list`")
    common_flags(d, target=True, repeat=True)
    d = dead.add_parser("purge", help="delete every dead letter of the target")
    common_flags(d, target=True, repeat=True)
    p.set_defaults(handler=run)
    _parser = p


def typed(letter: dict[str, str]) -> dict[str, Any]:
    """Redis hands back strings: numbers go out as numbers."""
    out: dict[str, Any] = {}
    for key, value in letter.items():
        if key in _TEXT_FIELDS:
            out[key] = value
        elif _INT.fullmatch(value):
            out[key] = int(value)
        elif _FLOAT.fullmatch(value):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    if args.dead_command is None:
        assert _parser is not None
        _parser.print_help(sys.stderr)
        return 2

    import orjson  # noqa: PLC0415

    from scraper import deadletters  # noqa: PLC0415
    from scraper.commands import common  # noqa: PLC0415
    from scraper.errors import UserError  # noqa: PLC0415

    settings = common.settings_for(args)
    url = common.redis_url(settings)

    async def go(client: Any) -> int:
        keys = common.keys(settings)
        if args.dead_command == "list":
            letters = await deadletters.list_dead(client, keys)
            if args.json:
                print(orjson.dumps([typed(letter) for letter in letters]).decode())
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

    return common.with_redis(settings, url, go)
