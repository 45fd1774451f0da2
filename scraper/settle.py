"""What one finished page changes in Redis, and the script that applies it at most once.

A consumer turns every claimed stream entry into one ``Outcome`` (done with
follow-ups and records, retried, released, dead-lettered or final). A batch of
outcomes is applied by ``SETTLE_LUA`` (``scraper.settle_lua``) in one EVAL: for each entry it XACKs
first and applies the rest only when XACK answered 1, and XDELs the acknowledged ones. A settle
retried after an ambiguous reply, or a page settled a second time after a
takeover, therefore changes nothing: follow-ups are enqueued exactly once, by
the settle that acknowledged their parent, so no fingerprint set is needed.

The same script keeps the completeness ledger (``scraper.ledger``) of each
video in step with its pages: open tasks per video and per thread, comments
fetched against what the service announced, the first reason a video cannot be
complete, and the video's status once its last open page settles.

A page opens threads in ``LedgerDelta.threads``: ``(root, rcount, pages)``, and
the ledger counts the thread's open pages and replies (``t:<root>:e/g/o``); or
``(root, rcount, 0)`` for a thread of one page, which opens nothing: its page's
task carries the rcount (``Task.expect``) and its settle compares it with what
the page gave, so most threads cost the ledger no field (issue 15).

Refresh crawls (``scraper.refresh``) ride on the same entries. Besides the
threads a page opens, ``LedgerDelta.threads`` carries two kinds of notes (they
travel in ``threads`` because that is the list a chain fetched inline merges):

- ``(0, known, top)``: a page note: how many of its records were already known
  before this refresh (rpid <= the task's watermark; they refresh the copy but
  are not new) and the newest rpid on the page (the next watermark);
- ``(root, rcount, -page_size)``: an old root seen by a refresh: the script
  compares ``rcount`` with the one stored when the thread was last fetched
  (``<prefix>:{T}:rcounts:<aid>``, 12 packed bytes per thread, the KEYS entry
  right after the video's ledger) and enqueues
  only the thread pages past the known replies when it grew (threads are
  oldest first, so new replies are at the end).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from scraper.tasks import Task


@dataclass(slots=True)
class LedgerDelta:
    """What a page tells the video's ledger (see scraper.ledger for the fields)."""

    expected: int | None = None  # comments the service announces (all_count / acount)
    # (root, rcount, pages) opened here; also page notes and rechecks (see page_note, recheck)
    threads: list[tuple[int, int, int]] = field(default_factory=list)
    status: str | None = None  # "closed" / "deleted": the video's final status
    reason: tuple[str, str] | None = None  # (code, detail): the video cannot be complete
    short_code: str | None = None  # root chain ended: the reason code if fetched < expected
    thread_code: str = "thread_short"  # reason code if this page's thread ends shorter than its rcount
    thread_gone: bool = False  # the thread's root was deleted: no shortfall to report
    # auto paging: a legacy page the service refused (-400) and the cursor chain that takes
    # the video over past it. The first refusal of a video enqueues the chain; each lowers
    # the ledger's ``depth`` (legacy pages that answered) to its page - 1.
    refused_page: int = 0
    tail: Task | None = None
    # auto paging: the roots a legacy page says the video lists now. When it differs
    # from page 1's, comments arrived or went mid-crawl and page numbers shifted (a
    # root may have slipped between two pages): the script then stops counting the
    # legacy pages and enqueues a cursor chain over the whole list that counts instead.
    listed: int | None = None


def page_note(known: int, top: int) -> tuple[int, int, int]:
    """A page's records already known before this refresh, and its newest rpid."""
    return (0, known, top)


def tail_note(records: int, page: int) -> tuple[int, int, int]:
    """A tail chain's page: its records are known if ``page`` is within the legacy depth."""
    return (-1, records, page)


def one_page_thread(root: int, rcount: int) -> tuple[int, int, int]:
    """A thread of one page: its rcount is remembered (refresh), no ledger fields opened;
    its page (``Task.expect``) settles the thread's check alone."""
    return (root, rcount, 0)


def recheck(root: int, rcount: int, page_size: int) -> tuple[int, int, int]:
    """An old root seen again: fetch its thread's new pages if ``rcount`` grew."""
    return (root, rcount, -page_size)


@dataclass(slots=True)
class Outcome:
    """One claimed entry's fate. Exactly one of done / retry / release / dead / final."""

    entry_id: bytes
    task: Task
    followups: list[Task] = field(default_factory=list)
    records: int = 0
    retry_due_ms: int | None = None  # with ``retry_task``
    retry_task: Task | None = None
    release: bool = False  # handed back untouched (drain)
    dead: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    counters: Counter[str] = field(default_factory=Counter)
    ledger: LedgerDelta = field(default_factory=LedgerDelta)

    @property
    def done(self) -> bool:
        """Settled for good: the page no longer counts as open in its video's ledger."""
        return self.retry_task is None and not self.release

    def encode(self, ledger_index: int) -> list[bytes]:
        """The script's arguments for this entry: its outcome, then its follow-up tasks
        (stream payloads as they are: the script unescapes no JSON inside JSON)."""
        delta = self.ledger
        data: dict[str, Any] = {"id": self.entry_id.decode(), "v": ledger_index, "r": self.task.root}
        if self.followups:
            data["fu"] = len(self.followups)
        if self.records:
            data["n"] = self.records
        if self.retry_task is not None:
            data["retry"] = [self.retry_task.encode().decode(), self.retry_due_ms or 0]
        if self.release:
            data["release"] = self.task.encode().decode()
        if self.dead is not None:
            data["dead"] = _flat(self.dead)
        if self.final is not None:
            data["final"] = _flat(self.final)
        if self.counters:
            data["c"] = dict(self.counters)
        data["d"] = 1 if self.done else 0
        if delta.expected is not None:
            data["e"] = delta.expected
        if delta.threads:
            data["th"] = [list(t) for t in delta.threads]
        if delta.status:
            data["s"] = delta.status
        if delta.reason:
            data["why"] = list(delta.reason)
        if delta.short_code:
            data["end"] = delta.short_code
        if self.task.root:  # read for sub-reply pages only
            data["tc"] = delta.thread_code
            if self.task.expect:
                data["te"] = self.task.expect  # a one-page thread: checked by this page alone
        if delta.thread_gone:
            data["tg"] = 1
        if delta.tail is not None:
            data["tail"] = [delta.refused_page, delta.tail.encode().decode()]
        if delta.listed is not None:
            data["ls"] = delta.listed
        if any(note[0] == -1 for note in delta.threads):
            data["tl"] = 1  # tail pages: the script reads whether the list moved
        return [orjson.dumps(data), *(t.encode() for t in self.followups)]


def _flat(record: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in record.items():
        out += [key, value if isinstance(value, str) else str(value)]
    return out
