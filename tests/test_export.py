"""`export`: exact results in bounded memory, newest copy per rpid, CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest

from scraper.errors import UserError
from scraper.export import export, partition_bits

TARGET = "t"
SMALL_BUDGET = 4096  # bytes: a few hundred bytes a partition, flushed to disk all the time


def _line(rpid: int, crawled_at: int | None = None, message: str = "", **extra: object) -> bytes:
    record: dict[str, object] = {"rpid": rpid, "oid": 170001 + rpid % 3, "bvid": "BV17x411w7KC", "root": 0,
                                 "parent": 0, "mid": rpid * 11, "uname": f"user{rpid}", "level": 3,
                                 "message": message or f"comment {rpid} 你好", "ctime": 1_700_000_000 + rpid,
                                 "like": rpid % 7, "rcount": 0, **extra}  # fmt: skip
    if crawled_at is not None:
        record["crawled_at"] = crawled_at
    return orjson.dumps(record) + b"\n"


def _write_shards(output_dir: Path) -> dict[int, bytes]:
    """Three shards with every case an export meets; returns the line each rpid must keep."""
    folder = output_dir / TARGET
    folder.mkdir(parents=True)
    expected: dict[int, bytes] = {}
    a, b, c = [], [], []
    for rpid in range(1, 301):  # plain comments, no crawled_at (an older version's shards)
        a.append(_line(rpid))
        expected[rpid] = a[-1]
    for rpid in range(1, 301, 3):  # re-fetched after a takeover: the same bytes again
        b.append(_line(rpid))
    for rpid in range(2, 301, 5):  # refreshed later: a newer copy with other likes wins over no crawled_at
        c.append(_line(rpid, crawled_at=1_800_000_000_000, message=f"edited {rpid}"))
        expected[rpid] = c[-1]
    for rpid in range(400, 460):  # two crawls: the newest wins even when it is read first
        newer = _line(rpid, crawled_at=1_800_000_000_500, message=f"newer {rpid}")
        older = _line(rpid, crawled_at=1_800_000_000_100, message=f"older {rpid}")
        a.append(newer)
        c.append(older)
        expected[rpid] = newer
    for rpid in range(500, 520):  # a tie on crawled_at keeps the first seen (shard-name order)
        first = _line(rpid, crawled_at=1_800_000_000_000, message=f"first {rpid}")
        second = _line(rpid, crawled_at=1_800_000_000_000, message=f"second {rpid}")
        a.append(first)
        b.append(second)
        expected[rpid] = first
    invalid = [b"not json\n", b'{"oid": 5}\n', b'{"rpid": "abc"}\n', b"[1, 2]\n", b'{"rpid": 7, "crawled_at": "x"}\n']
    b += invalid
    (folder / "a.jsonl").write_bytes(b"".join(a))
    (folder / "b.jsonl").write_bytes(b"".join(b))
    (folder / "c.jsonl").write_bytes(b"".join(c) + _line(999)[:-20])  # cut by a kill mid-write
    (folder / "notes.txt").write_text("not a shard")
    return expected


@pytest.mark.parametrize("memory_bytes", [SMALL_BUDGET, 32 << 20])
def test_export_keeps_the_newest_copy_of_each_rpid(tmp_path: Path, memory_bytes: int) -> None:
    expected = _write_shards(tmp_path / "out")
    destination = tmp_path / "dest" / "all.jsonl"
    summary = export(tmp_path / "out", TARGET, destination, memory_bytes=memory_bytes)

    lines = destination.read_bytes().splitlines(keepends=True)
    assert sorted(lines) == sorted(expected.values())  # exact bytes: one line per rpid, the right copy
    total = 300 + 100 + 60 + 60 * 2 + 20 * 2 + 5 + 1
    assert (summary.shards, summary.lines, summary.comments) == (3, total, len(expected))
    assert (summary.duplicates, summary.skipped) == (100 + 60 + 60 + 20, 5 + 1)
    assert summary.partitions == (1 if memory_bytes > SMALL_BUDGET else 1 << partition_bits(
        sum(p.stat().st_size for p in (tmp_path / "out" / TARGET).glob("*.jsonl")), memory_bytes))  # fmt: skip
    assert summary.partitions > 16 or memory_bytes > SMALL_BUDGET  # the small budget really split the work
    assert sorted(p.name for p in destination.parent.iterdir()) == ["all.jsonl"]  # no temp folder, no .tmp left

    # The order is the shards' (by name), each comment where its kept copy was read,
    # whatever the budget.
    assert lines == [line for line in _read_order(tmp_path / "out") if line in set(expected.values())]


def _read_order(output_dir: Path) -> list[bytes]:
    seen: list[bytes] = []
    for path in sorted((output_dir / TARGET).glob("*.jsonl")):
        seen += [line for line in path.read_bytes().splitlines(keepends=True) if line not in seen]
    return seen


def test_csv_and_excel_differ_by_the_byte_order_mark_only(tmp_path: Path) -> None:
    expected = _write_shards(tmp_path / "out")
    plain, excel = tmp_path / "all.csv", tmp_path / "all-excel.csv"
    export(tmp_path / "out", TARGET, plain, "csv", memory_bytes=SMALL_BUDGET)
    export(tmp_path / "out", TARGET, excel, "excel", memory_bytes=SMALL_BUDGET)
    assert excel.read_bytes() == b"\xef\xbb\xbf" + plain.read_bytes()
    assert not plain.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(excel.read_text(encoding="utf-8-sig"), newline="")))
    assert sorted(int(row["rpid"]) for row in rows) == sorted(expected)
    assert {row["message"] for row in rows if row["rpid"] == "400"} == {"newer 400"}
    assert {row["message"] for row in rows if row["rpid"] == "1"} == {"comment 1 你好"}


def test_export_refuses_an_unknown_format(tmp_path: Path) -> None:
    _write_shards(tmp_path / "out")
    with pytest.raises(UserError, match="--format must be one of jsonl, csv, excel"):
        export(tmp_path / "out", TARGET, tmp_path / "x", "xlsx")


def test_export_of_a_target_without_shards_is_empty(tmp_path: Path) -> None:
    (tmp_path / "out" / TARGET).mkdir(parents=True)
    summary = export(tmp_path / "out", TARGET, tmp_path / "all.jsonl", memory_bytes=SMALL_BUDGET)
    assert (summary.shards, summary.lines, summary.comments) == (0, 0, 0)
    assert (tmp_path / "all.jsonl").read_bytes() == b""
