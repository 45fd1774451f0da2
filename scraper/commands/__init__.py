"""The CLI's commands: one module each, registered in :data:`COMMANDS`.

A command is a module of this package with two functions::

    def register(sub: Subparsers) -> None:   # add its parser; set_defaults(handler=run)
    def run(args: argparse.Namespace) -> int:  # the exit code

Adding one (say ``report``): write ``scraper/commands/report.py`` with those
two functions and put ``"report"`` in :data:`COMMANDS` (its place there is its
place in ``scraper --help``). Shared flags and helpers are in
:mod:`scraper.commands.common`. Command modules import their heavy
dependencies inside ``run`` so that ``scraper --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

from scraper.commands.common import Subparsers

COMMANDS = (
    "run",
    "coordinate",
    "work",
    "export",
    "stats",
    "report",
    "dead",
    "reset",
    "simulate",
    "health",
    "exporter",
    "embedded",  # `scraper redis status|stop|url`
)


def register_all(sub: Subparsers) -> None:
    for name in COMMANDS:
        importlib.import_module(f"scraper.commands.{name}").register(sub)


def dispatch(args: argparse.Namespace) -> int:
    handler = args.handler
    code: int = handler(args)
    return code
