"""`scraper export`: merge the output shards into one file, one line per comment."""

from __future__ import annotations

import argparse
from pathlib import Path

from scraper.commands.common import Subparsers, common_flags


def register(sub: Subparsers) -> None:
    p = sub.add_parser("export", help="merge the output shards into one file, one line per comment")
    common_flags(p, target=True)
    p.add_argument(
        "--output-dir", help="where the shards are: a folder or s3://BUCKET/PREFIX (default from config: output)"
    )
    p.add_argument("--output", required=True, help="destination file")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "excel"],
        default="jsonl",
        help="jsonl (default), csv, or excel: CSV with a UTF-8 byte-order mark that spreadsheet programs read as UTF-8",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from scraper.commands import common  # noqa: PLC0415
    from scraper.export import export  # noqa: PLC0415
    from scraper.export_sources import open_source  # noqa: PLC0415

    settings = common.settings_for(args)
    summary = export(
        open_source(settings.worker.output_dir, settings.target.name, settings.s3),
        settings.target.name,
        Path(args.output),
        args.format,
        memory_bytes=settings.worker.export_memory_mb << 20,
    )
    print(
        f"export {settings.target.name}: {summary.comments} comments -> {args.output} "
        f"({summary.shards} shards, {summary.lines} lines, {summary.duplicates} duplicates removed, "
        f"{summary.skipped} partial lines skipped)"
    )
    return 0
