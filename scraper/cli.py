"""The `scraper` command: parse flags, build settings once, run one command.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input, 3 an
incomplete crawl (`run`), 130 interrupted. Every error is one line on
stderr, never a traceback (``--log-level DEBUG`` shows the traceback of an
unexpected error), and no message carries a password or the cookie (every
one goes through :func:`scraper.redact.redact`).

The commands live in :mod:`scraper.commands`, one module each.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from scraper.errors import RuntimeFailure, UserError
from scraper.redact import redact

if TYPE_CHECKING:
    from scraper.commands.common import Subparsers

log = logging.getLogger("scraper")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other bad input
        self.exit(2, redact(f"{self.prog}: error: {message} (see {self.prog} --help)\n"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("scraper")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked: importlib.metadata and the scan of
    the installed distributions cost every command ~30 ms of CPU (issue 15)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show program's version number and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"scraper {_version()}")  # on stdout, like argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from scraper.commands import register_all  # noqa: PLC0415

    parser = Parser(
        prog="scraper", description="Distributed comment scraper: Redis Streams + multi-process coroutine workers."
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    register_all(cast("Subparsers", sub))
    return parser


def _fail(message: str) -> None:
    print(redact(f"scraper: error: {message}"), file=sys.stderr)


def _start_worker_server(argv: Sequence[str]) -> None:
    """`work` and `run` fork their workers from a server that imports the hot path
    (workers.forkserver): start it before this process imports anything more, so
    that its ~0.25 s of imports overlaps ours (issue 15: a short job's start-up).
    `run` on a terminal starts it later, inside its live view (scraper.commands.run)."""
    command = argv[0] if argv else ""
    if "-h" in argv or "--help" in argv:
        return
    if command == "work" or (command == "run" and not sys.stderr.isatty()):
        from workers.forkserver import warm  # noqa: PLC0415

        warm()


def main(argv: Sequence[str] | None = None) -> int:
    _start_worker_server(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from scraper import commands  # noqa: PLC0415

    try:
        return commands.dispatch(args)
    except UserError as exc:
        _fail(str(exc))
        return 2
    except RuntimeFailure as exc:
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        print("scraper: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, not a traceback
        log.debug("unexpected error", exc_info=True)
        _fail(f"unexpected {type(exc).__name__}: {exc} (--log-level DEBUG shows the traceback)")
        return 1


def entry() -> NoReturn:
    """The console script: ``main``, then out at once.

    Everything the command wrote is closed by now (the export renamed into
    place, shards flushed by the workers, Redis told). What is left is the
    interpreter tearing down every module and object it loaded, ~50-70 ms on
    a command that imported aiohttp, redis and the rest: a short job pays it
    on each of its commands. The streams and the log handlers are flushed
    first; the forkserver and the resource tracker see their pipes close and
    end on their own, as they do after any exit (the forkserver is told at
    once, in case it is still importing).
    """
    code = main()
    if "workers.forkserver" in sys.modules:  # `work` and `run` started one: the workers are done with it
        sys.modules["workers.forkserver"].stop()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
