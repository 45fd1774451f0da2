"""The completeness ledger: per video, what the service announced against what was fetched.

One hash per video, ``<prefix>:{target}:video:<oid>``, written only by the
seed script (coordinator) and the settle script (workers), in the same
transaction as the pages it describes (scraper.settle):

=============  ================================================================
``bvid``       the video's BV id (its existence marks the video as seeded)
``status``     pending | complete | incomplete | closed (12002) | deleted (-404)
``open``       pages of the video not yet settled for good (queued, in flight, retrying)
``expected``   comments the service announced (cursor ``all_count`` / legacy ``acount``)
``fetched``    comments written (roots, previews, thread replies)
``reason``     first reason it cannot be complete (a code, see ``REASONS``)
``detail``     what exactly (a page, a thread: "thread 123: 20 of 57 replies")
``end``        reason code to use if the root list ended short (login / short)
``final``      closed / deleted, once a root page said so
``gone``       replies announced under roots since deleted (kept out of ``expected``)
``top``        the newest rpid written so far
``depth``      auto paging: legacy pages below the lowest one refused (-400); set once the
               cursor chain took the video over, whose pages up to it count as known
``rc0``        auto paging: the roots page 1 said the video lists
``lf``, ``tf`` auto paging: comments counted from legacy pages / from tail pages past ``depth``
``shift``      auto paging: a legacy page listed a different number of roots than page 1
               (the list moved mid-crawl): ``lf`` + ``tf`` were taken back out of
               ``fetched`` and a cursor chain over the whole list counts instead
``wm``         the watermark: ``top`` when the video last ended complete (refresh starts there)
``wm_n``       ``fetched`` at that moment (a refresh starts counting from it)
``wm_gap``     ``expected - fetched`` at that moment (the only shortfall a refresh may end with)
``since``      the watermark the running refresh started from (gone when it ends)
``slack``      a running refresh's tolerance: the shortfall its last complete crawl ended with
``rf``         a refresh is running ("0" plain, "1" deep); gone when it ends
``refreshed_at`` when the last refresh of the video ended (unix seconds)
``new``        comments the last refresh found (rpid above its watermark)
``t:<root>:e`` a thread's rcount      } only while a thread of several pages has open
``t:<root>:g`` replies fetched         } pages: deleted when its last page settles (a
``t:<root>:o`` the thread's open pages } one-page thread's page checks itself: Task.expect)
=============  ================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from scraper.errors import PageUnavailable
from scraper.keys import TargetKeys
from scraper.settle import LedgerDelta
from scraper.tasks import REPLY, Task

STATUSES = ("complete", "incomplete", "closed", "deleted", "pending")
DONE_STATUSES = ("complete", "closed", "deleted")
REASONS = {
    "login": "login required: {fetched:,} of {expected:,} comments visible",
    "login_thread": "login required: {fetched:,} of {expected:,} comments visible ({detail})",
    "short": "the service showed {fetched:,} of {expected:,} comments",
    "thread_short": "{fetched:,} of {expected:,} comments fetched ({detail})",
    "depth_cap": "legacy paging depth reached: {fetched:,} of {expected:,} comments ({detail})",
    "dead": "a page failed for good: {fetched:,} of {expected:,} comments ({detail})",
    "unavailable": "a page is unavailable: {fetched:,} of {expected:,} comments ({detail})",
    "refresh": "{fetched:,} of {expected:,} comments known after the refresh: the rest are likely "
    "replies to older comments (refresh with --deep)",
}


async def reopen(client: aioredis.Redis, pipe: Any, keys: TargetKeys, task: Task) -> None:
    """Queue, on ``pipe``, the ledger side of handing a dead page back to the queue.

    The video counts the page as open again; a "dead" reason is forgotten so the
    retry can complete it. (An operator command: read, then write in the pipe.)
    """
    ledger = keys.video(task.oid)
    reason = await client.hget(ledger, "reason")
    if not await client.exists(ledger):
        return
    pipe.hincrby(ledger, "open", 1)
    pipe.hset(ledger, "status", "pending")
    if reason == b"dead":
        pipe.hdel(ledger, "reason", "detail")


def failure_delta(task: Task, exc: PageUnavailable) -> LedgerDelta:
    """What a final ("not available") page means for its video."""
    if exc.kind in ("closed", "deleted") and task.kind != REPLY:
        return LedgerDelta(status=exc.kind)
    if exc.kind == "deleted":  # the thread's root is gone: nothing to miss there
        return LedgerDelta(thread_gone=True)
    if exc.kind == "depth_cap":
        return LedgerDelta(reason=("depth_cap", f"page {task.page} answered -400"))
    return LedgerDelta(reason=("unavailable", f"{task.fingerprint}: {exc.kind}"))


def dead_delta(task: Task, reason: str, attempts: int) -> LedgerDelta:
    return LedgerDelta(reason=("dead", f"{task.fingerprint} failed {attempts} times: {reason}"))


@dataclass(frozen=True, slots=True)
class VideoState:
    oid: int
    bvid: str
    status: str
    expected: int | None
    fetched: int
    reason: str  # human sentence, "" when complete
    refreshed_at: int | None = None  # unix seconds the last refresh ended; None: never refreshed
    new: int | None = None  # comments the last refresh found

    def as_dict(self) -> dict[str, Any]:
        return {
            "oid": self.oid,
            "bvid": self.bvid,
            "status": self.status,
            "expected": self.expected,
            "fetched": self.fetched,
            "reason": self.reason,
            "refreshed_at": self.refreshed_at,
            "new": self.new,
        }


def reason_text(code: str, detail: str, expected: int | None, fetched: int) -> str:
    template = REASONS.get(code)
    if template is None:
        return f"{code}: {detail}" if detail else code
    return template.format(fetched=fetched, expected=expected if expected is not None else 0, detail=detail)


async def read_videos(client: aioredis.Redis, keys: TargetKeys) -> list[VideoState]:
    """Every video of the list, in list order, with its ledger."""
    oids = [int(m) for m in await client.zrange(keys.videos, 0, -1)]
    fields = ("bvid", "status", "expected", "fetched", "reason", "detail", "refreshed_at", "new")
    states: list[VideoState] = []
    chunk = 500
    for start in range(0, len(oids), chunk):
        part = oids[start : start + chunk]
        pipe = client.pipeline(transaction=False)
        for oid in part:
            pipe.hmget(keys.video(oid), fields)
        for oid, values in zip(part, await pipe.execute(), strict=True):
            bvid, status, expected, fetched, code, detail, refreshed, new = (
                v.decode() if v is not None else None for v in values
            )
            exp = int(expected) if expected is not None else None
            got = int(fetched or 0)
            state = status or "pending"
            reason = ""
            if state == "incomplete":
                reason = reason_text(code or "short", detail or "", exp, got)
            elif state == "pending" and code:
                reason = "still crawling; so far: " + reason_text(code, detail or "", exp, got)
            states.append(
                VideoState(
                    oid,
                    bvid or "",
                    state,
                    exp,
                    got,
                    reason,
                    int(refreshed) if refreshed is not None else None,
                    int(new) if new is not None and refreshed is not None else None,
                )
            )
    return states


def summarize(states: list[VideoState]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for state in states:
        counts[state.status] = counts.get(state.status, 0) + 1
    return counts


def exit_code(states: list[VideoState]) -> int:
    """0 when every video is complete, closed or deleted; 3 otherwise."""
    return 0 if all(s.status in DONE_STATUSES for s in states) else 3


async def delete_ledgers(client: aioredis.Redis, keys: TargetKeys) -> int:
    """Remove every ledger hash of the target, and the thread rcounts refreshes use (``scraper reset``)."""
    deleted = 0
    for pattern in (keys.video_pattern, keys.rcounts_pattern):
        batch: list[str] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await client.delete(*batch))
                batch = []
        if batch:
            deleted += int(await client.delete(*batch))
    return deleted
