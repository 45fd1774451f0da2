"""The task encoding: what crosses Redis on every claim decodes to the task that was written."""

from __future__ import annotations

from scraper.tasks import CURSOR, MAIN, REPLY, Task


def test_every_field_round_trips() -> None:
    task = Task(
        kind=CURSOR,
        oid=170001,
        page=4,
        root=0,
        bvid="BV17x411w7KC",
        attempt=2,
        first_seen_ms=1_796_033_989_871,
        offset='{"type":1,"direction":1,"data":{"pn":4}}',
        renewals=1,
        since=9_000_000_001,
        deep=1,
        tail=-1,
    )
    decoded = Task.decode(task.encode())
    assert decoded == task
    assert hash(decoded) == hash(task)  # tasks stay usable as set members and dict keys


def test_the_settle_scripts_own_format_decodes() -> None:
    # scraper.settle_lua writes thread pages with string.format, not with Task.encode.
    raw = b'{"kind":"reply","oid":170001,"page":2,"root":5000001,"bvid":"BV17x411w7KC","since":0}'
    assert Task.decode(raw) == Task(kind=REPLY, oid=170001, page=2, root=5000001, bvid="BV17x411w7KC")


def test_numbers_written_as_strings_or_floats_and_unknown_keys_are_converted() -> None:
    assert Task.decode(b'{"kind":"main","oid":"7","page":3.0,"root":"0"}') == Task(kind=MAIN, oid=7, page=3)
    # A key this version does not know (written by a newer one) does not lose the page.
    assert Task.decode(b'{"kind":"main","oid":7,"page":3,"hint":"x"}') == Task(kind=MAIN, oid=7, page=3)


def test_retried_and_renewed_copies_leave_the_original_alone() -> None:
    task = Task(kind=MAIN, oid=7, page=3)
    assert (task.retried().attempt, task.renewed().renewals, task.attempt, task.renewals) == (1, 1, 0, 0)
