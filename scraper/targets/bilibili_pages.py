"""Parsing the three page shapes of the comment API into records, follow-ups and ledger facts.

"Empty is not the end": the service hides what a logged-out client may not
see behind ordinary-looking answers (``is_end`` after ~3 roots, ``replies:
null`` past page 1, short threads). The parser never treats those as complete:
it reports what the service announced, and the ledger compares it with what
was fetched when the video's last page settles.
"""

from __future__ import annotations

import math
import time
from typing import Any

from scraper.errors import BadPayload, Throttled
from scraper.settings import TargetSettings
from scraper.settle import one_page_thread, page_note, recheck, tail_note
from scraper.targets.base import PageResult
from scraper.tasks import CURSOR, HOT, MAIN, REPLY, Task


class PageParser:
    def __init__(self, target: TargetSettings, *, logged_in: bool) -> None:
        self.page_size = target.page_size
        self.page_window = target.page_window
        self.pages_window = target.pages_window
        self.sub_replies = target.sub_replies
        self.auto = target.root_paging == "auto"
        self.legacy_depth = target.legacy_depth
        self.logged_in = logged_in
        # Reason codes when the service shows less than it announces.
        self.short_code = "short" if logged_in else "login"
        self.thread_code = "thread_short" if logged_in else "login_thread"

    def parse(self, task: Task, data: dict[str, Any]) -> PageResult:
        crawled_at = int(time.time() * 1000)
        if task.kind == CURSOR:
            result = self._cursor(task, data, crawled_at)
        elif task.kind == HOT:
            result = self._hot(task, data, crawled_at)
        elif task.kind == MAIN:
            result = self._auto_legacy(task, data, crawled_at) if self.auto else self._legacy(task, data, crawled_at)
        else:
            result = self._thread(task, data, crawled_at)
        # What a refresh needs to know of every page: how many of its records it
        # had already (not new), and the newest rpid (the next watermark).
        rpids = [r["rpid"] for r in result.records]
        if rpids:
            known = sum(1 for rpid in rpids if rpid <= task.since) if task.since else 0
            result.ledger.threads.append(page_note(known, max(rpids)))
            if task.tail > 0:  # known too if the legacy pages hold it: the settle script knows their depth
                result.ledger.threads.append(tail_note(len(rpids), task.page))
        return result

    # ---- root pages ----------------------------------------------------------

    def _cursor(self, task: Task, data: dict[str, Any], crawled_at: int) -> PageResult:
        cursor = data.get("cursor")
        if not isinstance(cursor, dict):
            raise BadPayload("cursor page without data.cursor", reason="bad_shape")
        replies = _list(data.get("replies"))
        result = PageResult()
        if task.page == 1:
            result.ledger.expected = int(cursor.get("all_count") or 0)
            replies = _pinned(data, replies) + replies
        self._roots(task, replies, result, crawled_at)
        pagination = cursor.get("pagination_reply") or {}
        next_offset = str(pagination.get("next_offset") or "") if isinstance(pagination, dict) else ""
        listed = _list(data.get("replies"))  # the pinned comment is old yet not where the list stops
        if task.since and not task.deep and any(int(c.get("rpid") or 0) <= task.since for c in listed):
            # Newest first: past the watermark every root is known. Replies to
            # the older roots not seen here are what a deep refresh is for.
            result.ledger.short_code = "refresh"
        elif cursor.get("is_end") or not next_offset or next_offset == task.offset:
            result.ledger.short_code = self.short_code  # used only if fetched < expected
        else:
            result.continuation = Task(
                kind=CURSOR,
                oid=task.oid,
                page=task.page + 1,
                bvid=task.bvid,
                offset=next_offset,
                since=task.since,
                deep=task.deep,
                tail=task.tail,
            )
        return result

    def _hot(self, task: Task, data: dict[str, Any], crawled_at: int) -> PageResult:
        """Mode 3 by page number: the first page of each window opens the next window.

        ``all_count`` (roots and replies) bounds how far windows go; pages past
        the end answer empty with ``is_end`` and cost one request each.
        """
        cursor = data.get("cursor")
        if not isinstance(cursor, dict):
            raise BadPayload("cursor page without data.cursor", reason="bad_shape")
        replies = _list(data.get("replies"))
        result = PageResult()
        if task.page == 1:
            result.ledger.expected = int(cursor.get("all_count") or 0)
            result.ledger.short_code = self.short_code
            replies = _pinned(data, replies) + replies
        self._roots(task, replies, result, crawled_at)
        ended = bool(cursor.get("is_end")) or not replies
        if not ended and (task.page - 1) % self.pages_window == 0:
            bound = max(1, math.ceil(int(cursor.get("all_count") or 0) / self.page_size))
            last = min(bound, task.page + self.pages_window)
            result.followups.extend(
                Task(kind=HOT, oid=task.oid, page=p, bvid=task.bvid, since=task.since, deep=task.deep)
                for p in range(task.page + 1, last + 1)
            )
        return result

    def _legacy(self, task: Task, data: dict[str, Any], crawled_at: int) -> PageResult:
        result = PageResult()
        replies = self._legacy_replies(task, data, result)
        if replies is None:
            return result
        if (task.page - 1) % self.page_window == 0:  # the first page of a window opens the next
            page = data.get("page")
            if not isinstance(page, dict) or "count" not in page:
                raise BadPayload("root page without data.page.count", reason="bad_shape")
            pages = math.ceil(int(page["count"]) / self.page_size)
            last = min(pages, task.page + self.page_window)
            result.followups.extend(
                Task(kind=MAIN, oid=task.oid, page=p, bvid=task.bvid, since=task.since, deep=task.deep)
                for p in range(task.page + 1, last + 1)
            )
            if task.page == 1:
                result.ledger.expected = int(page.get("acount") or page["count"])
                result.ledger.short_code = self.short_code
        if task.page == 1:
            replies = _pinned(data, replies) + replies
        self._roots(task, replies, result, crawled_at)
        return result

    def _legacy_replies(self, task: Task, data: dict[str, Any], result: PageResult) -> list[dict[str, Any]] | None:
        """A legacy page's roots; None when the service hid them (``replies: null`` past page 1)."""
        raw = data.get("replies")
        if raw is None and task.page > 1:
            if self.logged_in:
                # With login this is a soft block more often than a gate: retry.
                raise Throttled("code 0 with replies: null past page 1 (soft block)", reason="soft_block")
            result.ledger.reason = ("login", f"legacy page {task.page}: replies null without login")
            return None
        return _list(raw)

    def _auto_legacy(self, task: Task, data: dict[str, Any], crawled_at: int) -> PageResult:
        """Legacy pages of ``root_paging = "auto"``: all of them at once, up to the depth.

        Page 1 knows how many pages the video has (``page.count`` roots): it
        enqueues them all up to ``legacy_depth``, and the first page past it as a
        probe (without login, page 2 alone first: the service shows a logged-out
        client page 1 only). A probe that answers (a service deeper than
        assumed) enqueues every page left; a -400 on any page hands the video
        over to the cursor (``past_depth``), once.
        """
        result = PageResult()
        replies = self._legacy_replies(task, data, result)
        if replies is None:
            return result
        depth = self.legacy_depth
        # Without login the service shows page 1 only: page 2 is asked alone first,
        # and fans the rest out if it answers (a server without that gate).
        opener = task.page == 1 or (task.page == 2 and not self.logged_in)
        probe = bool(depth) and task.page == depth + 1
        page = data.get("page")
        if isinstance(page, dict) and "count" in page:
            result.ledger.listed = int(page["count"])  # the settle script notices a list that moved
        if opener or probe:  # they read how many pages there are
            if not isinstance(page, dict) or "count" not in page:
                raise BadPayload("root page without data.page.count", reason="bad_shape")
            pages = math.ceil(int(page["count"]) / self.page_size)
            last = min(pages, depth + 1) if depth else pages  # depth + 1: the first probe
            more: dict[str, Any] = {"oid": task.oid, "bvid": task.bvid, "since": task.since, "deep": task.deep}
            if task.page == 1:
                result.ledger.expected = int(page.get("acount") or page["count"])
                result.ledger.short_code = self.short_code
                replies = _pinned(data, replies) + replies
                first = list(range(2, last + 1)) if self.logged_in else list(range(2, min(last, 2) + 1))
                if depth and last == depth + 1:  # the probe first: what it opens should not wait behind the rest
                    first.insert(0, first.pop())
                result.followups.extend(Task(kind=MAIN, page=p, **more) for p in first)
            elif opener:
                result.followups.extend(Task(kind=MAIN, page=p, **more) for p in range(3, last + 1))
            if probe:  # the service goes deeper than assumed: the rest at once (a -400 among them is handled)
                result.followups.extend(Task(kind=MAIN, page=p, **more) for p in range(task.page + 1, pages + 1))
        self._roots(task, replies, result, crawled_at)
        return result

    def past_depth(self, task: Task) -> PageResult:
        """A legacy page answered -400 under auto paging: the service's depth is below it.

        The settle script lowers the video's ``depth`` to ``task.page - 1`` and, on
        the video's first refusal only, enqueues a cursor chain from the newest root
        that takes the video over: its pages within the depth count as known.
        """
        result = PageResult()
        result.ledger.refused_page = task.page
        # ``tail``: where this refusal puts the depth (the ledger keeps the lowest): the
        # consumer follows the chain's pages up to it inline, they only lead past it.
        depth = max(task.page - 1, 1)
        result.ledger.tail = Task(kind=CURSOR, oid=task.oid, page=1, bvid=task.bvid, tail=depth)
        return result

    def _roots(self, task: Task, replies: list[dict[str, Any]], result: PageResult, crawled_at: int) -> None:
        for comment in replies:
            result.records.append(comment_record(comment, task.bvid, crawled_at))
            preview = _list(comment.get("replies"))
            rcount = int(comment.get("rcount") or 0)
            if self.sub_replies and rcount > len(preview):
                root = int(comment["rpid"])
                if (task.since and root <= task.since) or task.tail:
                    # Known root (a refresh), or one a tail chain may share with the legacy
                    # pages: the settle script fetches only what its thread gained.
                    result.ledger.threads.append(recheck(root, rcount, self.page_size))
                    continue
                pages = math.ceil(rcount / self.page_size)
                # Most threads have one page: it checks itself (its task carries the
                # rcount) and the ledger only remembers the rcount, for refreshes.
                one = pages == 1
                result.ledger.threads.append(one_page_thread(root, rcount) if one else (root, rcount, pages))
                result.followups.extend(
                    Task(
                        kind=REPLY,
                        oid=task.oid,
                        page=p,
                        root=root,
                        bvid=task.bvid,
                        since=task.since,
                        expect=rcount if one else 0,
                    )
                    for p in range(1, pages + 1)
                )
            else:
                result.records.extend(comment_record(reply, task.bvid, crawled_at) for reply in preview)

    # ---- sub-reply pages -----------------------------------------------------

    def _thread(self, task: Task, data: dict[str, Any], crawled_at: int) -> PageResult:
        # Past the end, or past page 1 without login: empty. The thread's ledger
        # compares what its pages gave with its rcount when its last page settles.
        replies = _list(data.get("replies"))
        result = PageResult(records=[comment_record(reply, task.bvid, crawled_at) for reply in replies])
        result.ledger.thread_code = self.thread_code
        return result


def _list(value: Any) -> list[dict[str, Any]]:
    """The comments of a ``replies`` list (the list itself unless it holds something else:
    called for every comment's preview, a copy per call cost more than the check)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadPayload("replies is not a list", reason="bad_shape")
    for comment in value:
        if type(comment) is not dict:
            return [c for c in value if isinstance(c, dict)]
    return value


def _pinned(data: dict[str, Any], replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pinned comments (first page only): outside ``replies``, once each."""
    seen = {c.get("rpid") for c in replies}
    found: list[dict[str, Any]] = []
    top = data.get("top")
    candidates = [top.get("upper")] if isinstance(top, dict) else []
    candidates += _list(data.get("top_replies"))
    upper = data.get("upper")  # older shape: data.upper.top
    if isinstance(upper, dict):
        candidates.append(upper.get("top"))
    for comment in candidates:
        if isinstance(comment, dict) and comment.get("rpid") not in seen:
            seen.add(comment.get("rpid"))
            found.append(comment)
    return found


def comment_record(comment: dict[str, Any], bvid: str, crawled_at: int = 0) -> dict[str, Any]:
    """The exported shape of one comment (documented in README: Output)."""
    try:
        member = comment.get("member") or {}
        content = comment.get("content") or {}
        level = (member.get("level_info") or {}).get("current_level")
        return {
            "rpid": int(comment["rpid"]),
            "oid": int(comment["oid"]),
            "bvid": bvid,
            "root": int(comment.get("root") or 0),
            "parent": int(comment.get("parent") or 0),
            "mid": int(comment.get("mid") or member.get("mid") or 0),
            "uname": member.get("uname", ""),
            "level": level,
            "message": content.get("message", ""),
            "ctime": int(comment.get("ctime") or 0),
            "like": int(comment.get("like") or 0),
            "rcount": int(comment.get("rcount") or 0),
            "crawled_at": crawled_at,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPayload(f"malformed comment: {exc!r}", reason="bad_shape") from None
