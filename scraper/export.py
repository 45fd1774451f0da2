"""Merge every shard of a target into one file, one line per comment, in bounded memory.

Delivery is at-least-once and videos are crawled again to refresh them, so a
comment can appear in several shards. For each ``rpid`` the export keeps the
most recently crawled copy (the record's ``crawled_at``, unix ms; records of
older versions lack it and count as 0; on a tie the first line seen wins, in
shard-name order). A shard cut mid-line by a killed process ends in a partial
line: it is skipped and counted (that page was never acknowledged, so it was
fetched again and its comments are elsewhere), as is a line that is not a JSON
object with an ``rpid``.

Memory does not grow with the number of comments. Pass 1 reads the shards once
and appends each valid line, behind a small fixed header, to one of 2^k
partition files in a temporary folder next to the destination; the partition
is chosen by the top bits of ``h = rpid * 0x9E3779B97F4A7C15 mod 2^64`` (a
bijection, so ``h`` identifies the rpid), and k is the smallest number that
keeps a partition under a quarter of the budget. Pass 2 loads one partition at
a time, keeps the newest copy of each ``h`` and writes them in ``h`` order. A
job that fits the budget never touches the disk. The budget is
``worker.export_memory_mb`` (default 32 MB; ``SCRAPER_WORKER_EXPORT_MEMORY_MB``).
The temporary folder needs about as much disk as the shards; it is removed
whatever happens.

Output order: ascending ``h``, the same for the same comments whatever the
budget, the shards' names or the machine. It is a fixed shuffle, not
chronological: sort on ``oid``/``ctime`` downstream if needed.

Formats: ``jsonl`` (the shard lines, byte for byte), ``csv`` (UTF-8, columns
``CSV_COLUMNS``) and ``excel``: the same CSV preceded by a UTF-8 byte-order
mark, which spreadsheet programs need to read UTF-8 instead of a legacy code
page. The result is written to ``<destination>.tmp`` and renamed over the
destination: a reader never sees half an export.
"""

from __future__ import annotations

import csv
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import IO, Any

import orjson

from scraper.errors import RuntimeFailure, UserError

CSV_COLUMNS = ["rpid", "oid", "bvid", "root", "parent", "mid", "uname", "level", "message", "ctime", "like", "rcount"]
FORMATS = ("jsonl", "csv", "excel")
DEFAULT_MEMORY_MB = 32

_MIX = 0x9E3779B97F4A7C15  # odd: multiplying by it is a bijection mod 2^64 (Fibonacci hashing)
_MASK = (1 << 64) - 1
_MIN_PARTITION_BYTES = 1024
_INDEX = struct.Struct("=QqQ")  # per line: h, crawled_at, length (native: read back by memoryview.cast)


@dataclass(frozen=True, slots=True)
class ExportSummary:
    shards: int
    lines: int
    comments: int
    duplicates: int  # valid lines dropped because another copy of the rpid won
    skipped: int  # partial or invalid lines
    partitions: int = 1  # 1: done in memory


def shard_files(output_dir: Path, target: str) -> list[Path]:
    return sorted((output_dir / target).glob("*.jsonl"))


def partition_bits(input_bytes: int, memory_bytes: int) -> int:
    """The smallest k such that 2^k partitions each hold under an eighth of the budget.

    Pass 2 holds a partition's lines, about 1.5 times as much again in its
    index (Python ints, a dict, offsets) and the output chunk it builds; pass 1's
    write buffers take another eighth. The interpreter itself is ~15 MB more."""
    partition_bytes = max(memory_bytes // 8, _MIN_PARTITION_BYTES)
    expected = input_bytes + input_bytes // 8  # the index adds ~20 B to a ~250 B line
    bits = 0
    while expected >> bits > partition_bytes:
        bits += 1
    return bits


class _Part:
    """One partition in memory: its lines, and per line an index record (h, crawled_at, length)."""

    __slots__ = ("index", "lines")

    def __init__(self) -> None:
        self.lines = bytearray()
        self.index = bytearray()


class _Partitions:
    """Pass 1's output: 2^bits partitions, each in two append-only files (lines, index)
    fed through buffers of bounded total size."""

    def __init__(self, folder: Path, bits: int, flush_bytes: int) -> None:
        self.folder = folder
        self.shift = 64 - bits
        self.parts = [_Part() for _ in range(1 << bits)]
        self.flushed = [False] * (1 << bits)
        self.flush_bytes = flush_bytes

    def _path(self, number: int, column: str) -> Path:
        return self.folder / f"{number:05x}.{column}"

    def _append(self, number: int) -> None:
        # Open, append, close: thousands of partitions never hold thousands of descriptors.
        part = self.parts[number]
        for column, data in (("lines", part.lines), ("index", part.index)):
            with open(self._path(number, column), "ab") as handle:
                handle.write(data)
        self.parts[number] = _Part()
        self.flushed[number] = True

    def flush(self) -> None:
        for number, part in enumerate(self.parts):
            if part.lines:
                self._append(number)

    def contents(self) -> Iterator[_Part]:
        """Each partition in turn, read back from disk or as it stayed in memory.

        Nothing here keeps a reference to what it yielded: one partition at a time."""
        for number in range(len(self.parts)):
            if self.flushed[number]:
                if self.parts[number].lines:  # the tail that came after the last flush
                    self._append(number)
                self.parts[number] = _Part()
                yield self._load(number)
            else:
                part, self.parts[number] = self.parts[number], _Part()
                yield part
                del part

    def _load(self, number: int) -> _Part:
        part = _Part()
        for column, data in (("lines", part.lines), ("index", part.index)):
            path = self._path(number, column)
            with open(path, "rb") as handle:
                data += handle.read()
            path.unlink()  # the disk it took is free again before the next partition loads
        return part


def _split(paths: list[Path], partitions: _Partitions, counts: dict[str, int]) -> None:
    """Pass 1: every complete, valid line to its partition (the hot loop: kept flat)."""
    lines = skipped = buffered = 0
    parts, shift, flush_bytes = partitions.parts, partitions.shift, partitions.flush_bytes
    loads, pack = orjson.loads, _INDEX.pack
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                lines += 1
                if not line.endswith(b"\n"):
                    skipped += 1  # cut by a kill mid-write
                    continue
                try:
                    record = loads(line)
                    rpid = record["rpid"]
                    crawled_at = record.get("crawled_at") or 0
                    entry = pack(
                        h := ((rpid if type(rpid) is int else int(rpid)) * _MIX) & _MASK,
                        crawled_at if type(crawled_at) is int else int(crawled_at),
                        len(line),
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, struct.error):
                    skipped += 1  # not a JSON object with an integer rpid (and crawled_at)
                    continue
                part = parts[h >> shift]
                part.lines += line
                part.index += entry
                buffered += len(line)  # + the index's 24 B: flush_bytes leaves room for it
                if buffered > flush_bytes:
                    partitions.flush()
                    buffered = 0
    counts["lines"], counts["skipped"] = lines, skipped


def _newest(part: _Part) -> tuple[bytes | bytearray, int, int]:
    """Pass 2 on one partition: its lines without the copies that lost, how many
    lines that is, and how many copies lost.

    Every step runs in C (memoryview, zip, dict, sorted, set) except one Python
    step per dropped copy: a partition without duplicates costs next to nothing."""
    words = memoryview(part.index).cast("Q")
    hs = words[0::3]
    count = len(hs)
    best = dict(zip(reversed(hs), range(count - 1, -1, -1), strict=True))  # h -> its first copy
    if len(best) == count:
        return part.lines, count, 0
    crawled = memoryview(part.index).cast("q")[1::3]
    if any(crawled):
        # Later writes win in a dict: feed the copies by crawled_at ascending, and
        # within one crawled_at from the last seen to the first (a stable sort of the
        # reversed positions), so the newest copy wins and a tie keeps the first seen.
        order = sorted(range(count - 1, -1, -1), key=crawled.__getitem__)
        best = dict(zip(map(hs.__getitem__, order), order, strict=True))
    offsets = list(accumulate(words[2::3], initial=0))
    view = memoryview(part.lines)
    pieces = []
    start = 0
    for dropped in sorted(set(range(count)).difference(best.values())):
        pieces.append(view[offsets[start] : offsets[dropped]])
        start = dropped + 1
    pieces.append(view[offsets[start] :])
    return b"".join(pieces), len(best), count - len(best)


def _writer(out: IO[Any], fmt: str) -> Callable[[bytes | bytearray], None]:
    if fmt == "jsonl":

        def write_lines(kept: bytes | bytearray) -> None:
            out.write(kept)

        return write_lines
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()

    def write_rows(kept: bytes | bytearray) -> None:
        writer.writerows(map(orjson.loads, kept.splitlines()))

    return write_rows


def _open_output(path: Path, fmt: str) -> IO[Any]:
    if fmt == "jsonl":
        return open(path, "wb")  # noqa: SIM115 - closed by the caller's with
    # utf-8-sig writes the byte-order mark once, at the start of the file.
    return open(path, "w", newline="", encoding="utf-8-sig" if fmt == "excel" else "utf-8")  # noqa: SIM115


def export(
    output_dir: Path,
    target: str,
    destination: Path,
    fmt: str = "jsonl",
    *,
    memory_bytes: int = DEFAULT_MEMORY_MB << 20,
) -> ExportSummary:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    paths = shard_files(output_dir, target)
    if not paths and not (output_dir / target).is_dir():
        raise UserError(f"{output_dir / target}: no output for target {target!r} (run `scraper work` first)")
    counts = {"lines": 0, "skipped": 0}
    kept = duplicates = 0
    tmp = destination.with_name(destination.name + ".tmp")
    folder: Path | None = None
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        bits = partition_bits(sum(path.stat().st_size for path in paths), memory_bytes)
        folder = Path(tempfile.mkdtemp(prefix=f".{destination.name}.parts-", dir=destination.parent))
        partitions = _Partitions(folder, bits, flush_bytes=max(memory_bytes // 9, _MIN_PARTITION_BYTES))
        _split(paths, partitions, counts)
        with _open_output(tmp, fmt) as out:
            write = _writer(out, fmt)
            for part in partitions.contents():
                lines, count, dropped = _newest(part)
                del part
                write(lines)
                kept += count
                duplicates += dropped
                del lines  # before the next partition loads
        os.replace(tmp, destination)  # a reader never sees half an export
    except OSError as exc:
        raise RuntimeFailure(f"{destination}: cannot write export: {exc.strerror}") from None
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return ExportSummary(
        shards=len(paths),
        lines=counts["lines"],
        comments=kept,
        duplicates=duplicates,
        skipped=counts["skipped"],
        partitions=1 << bits,
    )
