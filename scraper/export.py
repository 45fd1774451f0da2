"""Merge every shard of a target into one file, one line per comment.

Delivery is at-least-once, so a comment can appear in several shards (a page
fetched twice after a crash or a takeover); the export keeps the first line of
each ``rpid``. A shard cut mid-line by a killed process ends in a partial line:
it is skipped and counted (that page was never acknowledged, so it was fetched
again and its comments are elsewhere).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scraper.errors import RuntimeFailure, UserError
from scraper.export_sources import ShardSource

CSV_COLUMNS = ["rpid", "oid", "bvid", "root", "parent", "mid", "uname", "level", "message", "ctime", "like", "rcount"]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    shards: int
    lines: int
    comments: int
    duplicates: int
    skipped: int  # partial or invalid lines


def shard_files(output_dir: Path, target: str) -> list[Path]:
    return sorted((output_dir / target).glob("*.jsonl"))


def _records(source: ShardSource, names: list[str], counts: dict[str, int]) -> Iterator[tuple[int, bytes]]:
    for name in names:
        for line in source.lines(name):
            counts["lines"] += 1
            if not line.endswith(b"\n"):
                counts["skipped"] += 1  # cut by a kill mid-write
                continue
            try:
                rpid = orjson.loads(line)["rpid"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                counts["skipped"] += 1
                continue
            yield int(rpid), line


def export(source: ShardSource, target: str, destination: Path, fmt: str = "jsonl") -> ExportSummary:
    if fmt not in ("jsonl", "csv"):
        raise UserError(f"--format must be jsonl or csv, got {fmt!r}")
    paths = source.names()
    counts = {"lines": 0, "skipped": 0}
    seen: set[int] = set()
    duplicates = 0
    tmp = destination.with_name(destination.name + ".tmp")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(
            tmp, "w" if fmt == "csv" else "wb", **({"newline": "", "encoding": "utf-8"} if fmt == "csv" else {})
        ) as out:  # type: ignore[call-overload]
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore") if fmt == "csv" else None
            if writer is not None:
                writer.writeheader()
            for rpid, line in _records(source, paths, counts):
                if rpid in seen:
                    duplicates += 1
                    continue
                seen.add(rpid)
                if writer is None:
                    out.write(line)
                else:
                    record: dict[str, Any] = orjson.loads(line)
                    writer.writerow(record)
        os.replace(tmp, destination)  # a reader never sees half an export
    except OSError as exc:
        raise RuntimeFailure(f"{destination}: cannot write export: {exc.strerror}") from None
    return ExportSummary(
        shards=len(paths), lines=counts["lines"], comments=len(seen), duplicates=duplicates, skipped=counts["skipped"]
    )
