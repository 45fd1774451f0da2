"""Merge every shard of a target into one file, one line per comment, in bounded memory.

Delivery is at-least-once and videos are crawled again to refresh them, so a
comment can appear in several shards. For each ``rpid`` the export keeps the
most recently crawled copy (the record's ``crawled_at``, unix ms; records of
older versions lack it and count as 0; on a tie the first line seen wins, in
shard-name order). A shard cut mid-line by a killed process ends in a partial
line: it is skipped and counted (that page was never acknowledged, so it was
fetched again and its comments are elsewhere), as is a line that is not a JSON
object with an integer ``rpid``.

Memory does not grow with the number of comments; nothing but small index
records ever goes through Python twice:

1. *Scan*: read the shards once; per valid line (the workers' own lines give
   rpid and crawled_at by slicing, as ``comment_record`` writes rpid first
   and crawled_at last; any other line is parsed as JSON), a 32-byte record (h,
   crawled_at, position, length) goes to one of 2^k index partitions, chosen
   by the top bits of ``h = rpid * 0x9E3779B97F4A7C15 mod 2^64`` (a bijection:
   ``h`` identifies the rpid). An invalid or partial line goes straight to the
   drop list.
2. *Decide*: load one index partition at a time, keep the newest copy of each
   ``h`` (C loops: dict, sorted), and add every losing copy's (position,
   length) to the drop list, bucketed by position.
3. *Copy*: stream the shards in order, copying the bytes between dropped lines
   (a CSV export parses the kept lines to write its rows).

Index partitions and drop buckets stay in memory until they fill their share
of the budget, then go to files in a temporary folder next to the destination
(about 12% of the shards' size), removed whatever happens. The budget is
``worker.export_memory_mb`` (default 32 MB; ``SCRAPER_WORKER_EXPORT_MEMORY_MB``);
the interpreter and the CLI's imports add ~30 MB of their own.

Shards come from a ``ShardSource`` (``scraper.export_sources``): the local
output folder or an S3-compatible bucket (``worker.output_dir = s3://...``).
Either is read front to back, twice (scan, copy), never seeked in; a bucket
object streams in chunks and is never held whole.

Output order: the order of the shards (by name) and of the lines in them, each
comment where its kept copy was read; the same whatever the budget.

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
from pathlib import Path
from typing import IO, Any

import orjson

from scraper.errors import RuntimeFailure, UserError
from scraper.export_sources import LocalShards, ShardSource

CSV_COLUMNS = ["rpid", "oid", "bvid", "root", "parent", "mid", "uname", "level", "message", "ctime", "like", "rcount"]
FORMATS = ("jsonl", "csv", "excel")
DEFAULT_MEMORY_MB = 32

_MIX = 0x9E3779B97F4A7C15  # odd: multiplying by it is a bijection mod 2^64 (Fibonacci hashing)
_MASK = (1 << 64) - 1
_RECORD = struct.Struct("=QqQQ")  # h, crawled_at, position, length (native: read back by memoryview.cast)
_DROP = struct.Struct("=QQ")  # position, length
_OFFSET_BITS = 40  # position = shard number << 40 | byte offset in the shard (shards up to 1 TB)
_LINE_BYTES_GUESS = 200  # to size the partitions before the scan; comment lines run 250-400 B
_WORK_BYTES_PER_LINE = 512  # what pass 2 holds per index record in Python objects (dict, lists)


def _chunk_bytes(memory_bytes: int) -> int:
    """Reads and copies go by chunks of this size (a few of them live at once)."""
    return min(max(memory_bytes // 32, 1 << 16), 1 << 20)


@dataclass(frozen=True, slots=True)
class ExportSummary:
    shards: int
    lines: int
    comments: int
    duplicates: int  # valid lines dropped because another copy of the rpid won
    skipped: int  # partial or invalid lines
    partitions: int = 1


def shard_files(output_dir: Path, target: str) -> list[Path]:
    return sorted((output_dir / target).glob("*.jsonl"))


def partition_bits(input_bytes: int, memory_bytes: int) -> int:
    """The smallest k such that each of 2^k index partitions fits half the budget in pass 2."""
    lines_per_partition = max(memory_bytes // 2 // _WORK_BYTES_PER_LINE, 16)
    expected_lines = input_bytes // _LINE_BYTES_GUESS
    bits = 0
    while expected_lines >> bits > lines_per_partition:
        bits += 1
    return bits


class _Spill:
    """Append-only byte buckets: in memory until their total passes ``flush_bytes``,
    then appended to one file per bucket (opened and closed at each flush, so
    thousands of buckets never hold thousands of descriptors)."""

    def __init__(self, folder: Path, name: str, buckets: int, flush_bytes: int) -> None:
        self.folder = folder
        self.name = name
        self.buffers = [bytearray() for _ in range(buckets)]
        self.flushed = [False] * buckets
        self.flush_bytes = flush_bytes
        self.size = 0

    def _path(self, bucket: int) -> Path:
        return self.folder / f"{self.name}-{bucket:06x}"

    def add(self, bucket: int, data: bytes) -> None:
        self.buffers[bucket] += data
        self.size += len(data)
        if self.size > self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        for bucket, buffer in enumerate(self.buffers):
            if buffer:
                with open(self._path(bucket), "ab") as handle:
                    handle.write(buffer)
                self.buffers[bucket] = bytearray()
                self.flushed[bucket] = True
        self.size = 0

    def take(self, bucket: int) -> bytes | bytearray:
        """Everything added to ``bucket``, which is then forgotten (its file removed)."""
        tail, self.buffers[bucket] = self.buffers[bucket], bytearray()
        self.size -= len(tail)
        if not self.flushed[bucket]:
            return tail
        path = self._path(bucket)
        with open(path, "ab+") as handle:
            handle.write(tail)
            handle.seek(0)
            data = handle.read()
        path.unlink()
        return data


class _Drops:
    """Lines not to copy, bucketed by position so that pass 3 holds one bucket at a time."""

    def __init__(self, folder: Path, sizes: list[int], memory_bytes: int) -> None:
        # A bucket covers at most an eighth of the budget of shard bytes: even if
        # every line in it were dropped, its records fit.
        self.span_bits = max((memory_bytes // 8).bit_length() - 1, 10)
        self.base = [0]
        for size in sizes:
            self.base.append(self.base[-1] + (size >> self.span_bits) + 1)
        self.spill = _Spill(folder, "drops", self.base[-1], max(memory_bytes // 16, 1024))

    def add(self, position: int, length: int) -> None:
        shard, offset = position >> _OFFSET_BITS, position & ((1 << _OFFSET_BITS) - 1)
        self.spill.add(self.base[shard] + (offset >> self.span_bits), _DROP.pack(position, length))

    def of_shard(self, shard: int) -> Iterator[tuple[int, int]]:
        """(offset, length) of the shard's dropped lines, in offset order."""
        mask = (1 << _OFFSET_BITS) - 1
        for bucket in range(self.base[shard], self.base[shard + 1]):
            words = memoryview(self.spill.take(bucket)).cast("Q")
            yield from sorted(zip((position & mask for position in words[0::2]), words[1::2]))


def _scan(
    source: ShardSource, shards: list[tuple[str, int]], index: _Spill, shift: int, drops: _Drops, chunk_bytes: int
) -> tuple[int, int]:
    """Pass 1: an index record per valid line, a drop per invalid one. Returns (lines,
    skipped). A shard is read up to the size it had before the export: a line
    written since is not part of this export (pass 3 copies no further either)."""
    lines = skipped = buffered = 0
    buffers, flush_bytes = index.buffers, index.flush_bytes
    loads, pack = orjson.loads, _RECORD.pack
    for shard, (name, size) in enumerate(shards):
        position = shard << _OFFSET_BITS
        carry = b""
        for chunk in source.chunks(name, size, chunk_bytes):
            pieces = (carry + chunk).split(b"\n")
            carry = pieces.pop()  # the start of a line the next chunk ends
            for line in pieces:
                lines += 1
                length = len(line) + 1
                try:
                    # Our own lines (comment_record's key order: rpid first, crawled_at
                    # last) give both numbers by slicing: a JSON parse per line was
                    # most of the export's time. Anything else is parsed.
                    comma = line.find(b",", 8)
                    tail = line.rfind(b',"crawled_at":')
                    if line.startswith(b'{"rpid":') and comma > 8 and tail > 0 and line.endswith(b"}"):
                        try:
                            rpid, crawled_at = int(line[8:comma]), int(line[tail + 14 : -1])
                        except ValueError:
                            rpid, crawled_at = _numbers(loads(line))
                    else:
                        rpid, crawled_at = _numbers(loads(line))
                    entry = pack(
                        h := ((rpid if type(rpid) is int else int(rpid)) * _MIX) & _MASK,
                        crawled_at if type(crawled_at) is int else int(crawled_at),
                        position,
                        length,
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, struct.error):
                    skipped += 1  # not a JSON object with an integer rpid (and crawled_at)
                    drops.add(position, length)
                    position += length
                    continue
                buffers[h >> shift] += entry
                position += length
                buffered += 32
                if buffered > flush_bytes:
                    index.flush()
                    buffered = 0
        if carry:  # no newline: cut by a kill mid-write (or still being written)
            lines += 1
            skipped += 1
            drops.add(position, len(carry))
    return lines, skipped


def _numbers(record: Any) -> tuple[Any, Any]:
    """(rpid, crawled_at) of a parsed line; raises for a line that is not an object with an rpid."""
    return record["rpid"], record.get("crawled_at") or 0


def _losers(records: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """Pass 2 on one index partition: (position, length) of every copy that is not the
    newest of its rpid. Every step is a C loop (memoryview, zip, dict, sorted, set)
    except one Python step per losing copy."""
    words = memoryview(records).cast("Q")
    hs, positions, lengths = words[0::4], words[2::4], words[3::4]
    count = len(hs)
    best = dict(zip(reversed(hs), range(count - 1, -1, -1)))  # h -> its first copy
    if len(best) == count:
        return
    crawled = memoryview(records).cast("q")[1::4]
    if any(crawled):
        # Later writes win in a dict: feed the copies by crawled_at ascending, and
        # within one crawled_at from the last read to the first (a stable sort of the
        # reversed numbers), so the newest copy wins and a tie keeps the first read.
        order = sorted(range(count - 1, -1, -1), key=crawled.__getitem__)
        best = dict(zip(map(hs.__getitem__, order), order))
    for number in set(range(count)).difference(best.values()):
        yield positions[number], lengths[number]


def _copy(
    source: ShardSource, shards: list[tuple[str, int]], drops: _Drops, write: Callable[[bytes], None], chunk_bytes: int
) -> None:
    """Pass 3: every shard's bytes up to its size before the export, but its dropped
    lines. Each shard is streamed front to back (a bucket object has no cheap
    random access), the dropped ranges cut out in offset order."""
    for shard, (name, size) in enumerate(shards):
        ranges = drops.of_shard(shard)
        skip = next(ranges, None)
        offset = 0  # of the chunk's first byte in the shard
        for chunk in source.chunks(name, size, chunk_bytes):
            end = offset + len(chunk)
            cursor = offset
            while skip is not None and skip[0] < end:
                start, length = skip
                if start > cursor:
                    write(chunk[cursor - offset : start - offset])
                cursor = max(cursor, start + length)
                if start + length > end:
                    break  # the dropped line goes on in the next chunk
                skip = next(ranges, None)
            if cursor < end:
                write(chunk[cursor - offset :])
            offset = end


def _writer(out: IO[Any], fmt: str) -> tuple[Callable[[bytes], None], Callable[[], None]]:
    """(write bytes of whole or partial lines, finish)."""
    if fmt == "jsonl":

        def write_lines(chunk: bytes) -> None:
            out.write(chunk)

        return write_lines, lambda: None
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    carry = bytearray()

    def write_rows(chunk: bytes) -> None:
        carry.extend(chunk)
        cut = carry.rfind(b"\n") + 1
        if cut:
            writer.writerows(map(orjson.loads, carry[:cut].splitlines()))
            del carry[:cut]

    def finish() -> None:
        if carry.strip():
            write_rows(b"\n")

    return write_rows, finish


def _open_output(path: Path, fmt: str) -> IO[Any]:
    if fmt == "jsonl":
        return open(path, "wb")  # noqa: SIM115 - closed by the caller's with
    # utf-8-sig writes the byte-order mark once, at the start of the file.
    return open(path, "w", newline="", encoding="utf-8-sig" if fmt == "excel" else "utf-8")  # noqa: SIM115


def export(
    output: ShardSource | Path,
    target: str,
    destination: Path,
    fmt: str = "jsonl",
    *,
    memory_bytes: int = DEFAULT_MEMORY_MB << 20,
) -> ExportSummary:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    source = LocalShards(output, target) if isinstance(output, Path) else output
    shards = source.shards()  # names and sizes, fixed now: lines written later are not exported
    tmp = destination.with_name(destination.name + ".tmp")
    folder: Path | None = None
    duplicates = 0
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        sizes = [size for _, size in shards]
        bits = partition_bits(sum(sizes), memory_bytes)
        folder = Path(tempfile.mkdtemp(prefix=f".{destination.name}.parts-", dir=destination.parent))
        index = _Spill(folder, "index", 1 << bits, max(memory_bytes // 8, 1024))
        drops = _Drops(folder, sizes, memory_bytes)
        lines, skipped = _scan(source, shards, index, 64 - bits, drops, _chunk_bytes(memory_bytes))
        for partition in range(1 << bits):
            for position, length in _losers(index.take(partition)):
                drops.add(position, length)
                duplicates += 1
        with _open_output(tmp, fmt) as out:
            write, finish = _writer(out, fmt)
            _copy(source, shards, drops, write, _chunk_bytes(memory_bytes))
            finish()
        os.replace(tmp, destination)  # a reader never sees half an export
    except OSError as exc:
        raise RuntimeFailure(f"{destination}: cannot write export: {exc.strerror}") from None
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return ExportSummary(
        shards=len(shards),
        lines=lines,
        comments=lines - skipped - duplicates,
        duplicates=duplicates,
        skipped=skipped,
        partitions=1 << bits,
    )
