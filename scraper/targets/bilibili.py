"""The Bilibili comment API (and the bundled simulator, which speaks its shape).

Fan-out: every page of a video's root comments tells ``data.page.count``
(roots only). Pages are enqueued in windows of ``page_window``: page 1 enqueues
pages 2..1+W, page 1+W the next W, and so on. Many pages of one video are in
flight at once, yet a video deeper than the API's depth cap (it answers -400
past a few hundred pages) costs at most one window of refused requests instead
of every page up to the count. A root comment whose ``rcount`` is larger than its embedded preview
(up to 3 replies) gets all its ``/x/v2/reply/reply`` pages enqueued; otherwise
the preview is complete and is written as is.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from scraper.errors import BadPayload, PageUnavailable, ServerError, Throttled, TransientError
from scraper.settings import TargetSettings
from scraper.targets.base import PageResult
from scraper.tasks import MAIN, REPLY, Task
from scraper.videos import Video

# API codes (HTTP 200 bodies) and what they mean for the page.
_FINAL_CODES = {
    12002: "closed",  # comments closed
    -404: "deleted",  # no such video
    12022: "deleted",  # root comment deleted
    -400: "depth_cap",  # "pn out of bounds" / "max offset exceeded"
}
_THROTTLE_CODES = {-412: "banned", -352: "risk_check", -799: "too_frequent"}
_SERVER_CODES = {-500: "server_error", -503: "overloaded", -509: "overloaded"}


class BilibiliAdapter:
    def __init__(self, target: TargetSettings) -> None:
        self.base_url = target.base_url.rstrip("/")
        self.page_size = target.page_size
        self.page_window = target.page_window
        self.sub_replies = target.sub_replies
        self._bvids: dict[int, str] = {}

    def seed_tasks(self, videos: list[Video]) -> list[Task]:
        return [Task(kind=MAIN, oid=v.aid, page=1, bvid=v.bvid) for v in videos]

    def url(self, task: Task) -> str:
        if task.kind == MAIN:
            return f"{self.base_url}/x/v2/reply?type=1&oid={task.oid}&pn={task.page}&ps={self.page_size}&sort=0"
        return (
            f"{self.base_url}/x/v2/reply/reply?type=1&oid={task.oid}&root={task.root}"
            f"&pn={task.page}&ps={self.page_size}"
        )

    def parse(self, task: Task, body: bytes) -> PageResult:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadPayload(f"invalid JSON ({len(body)} bytes): {exc}", reason="bad_json") from None
        if not isinstance(payload, dict):
            raise BadPayload("JSON body is not an object", reason="bad_json")
        code = payload.get("code")
        if code != 0:
            self._raise_for_code(code, payload.get("message", ""))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise BadPayload("code 0 without a data object", reason="bad_shape")
        if task.kind == MAIN:
            return self._parse_main(task, data)
        return self._parse_replies(task, data)

    @staticmethod
    def _raise_for_code(code: Any, message: str) -> None:
        if code in _FINAL_CODES:
            raise PageUnavailable(f"API code {code}: {message}", kind=_FINAL_CODES[code])
        if code in _THROTTLE_CODES:
            raise Throttled(f"API code {code}: {message}", reason=_THROTTLE_CODES[code])
        if code in _SERVER_CODES:
            raise ServerError(f"API code {code}: {message}", reason=_SERVER_CODES[code])
        raise TransientError(f"unexpected API code {code}: {message}", reason="api_code")

    def _parse_main(self, task: Task, data: dict[str, Any]) -> PageResult:
        replies = data.get("replies")
        if replies is None:
            if task.page > 1:
                # code 0 and no list where count promised one: the soft block
                # the real API gives clients without cookies. Retry, then dead letter.
                raise Throttled("code 0 with replies: null past page 1 (soft block)", reason="soft_block")
            replies = []
        if not isinstance(replies, list):
            raise BadPayload("replies is not a list", reason="bad_shape")
        result = PageResult()
        bvid = task.bvid
        if (task.page - 1) % self.page_window == 0:  # the first page of a window opens the next
            pages = math.ceil(_page_count(data) / self.page_size)
            last = min(pages, task.page + self.page_window)
            result.followups.extend(
                Task(kind=MAIN, oid=task.oid, page=p, bvid=bvid) for p in range(task.page + 1, last + 1)
            )
        if task.page == 1:
            # Pinned comments sit outside the page list; the export's dedup by
            # rpid absorbs the repeats.
            pinned = [c for c in (data.get("top_replies") or []) if isinstance(c, dict)]
            upper_top = (data.get("upper") or {}).get("top")
            if isinstance(upper_top, dict):
                pinned.append(upper_top)
            replies = pinned + replies
        for comment in replies:
            result.records.append(comment_record(comment, bvid))
            preview = comment.get("replies") or []
            rcount = int(comment.get("rcount") or 0)
            if self.sub_replies and rcount > len(preview):
                pages = math.ceil(rcount / self.page_size)
                root = int(comment["rpid"])
                result.followups.extend(
                    Task(kind=REPLY, oid=task.oid, page=p, root=root, bvid=bvid) for p in range(1, pages + 1)
                )
            else:
                result.records.extend(comment_record(reply, bvid) for reply in preview)
        return result

    def _parse_replies(self, task: Task, data: dict[str, Any]) -> PageResult:
        replies = data.get("replies") or []  # past the end: empty, the sequence is over
        if not isinstance(replies, list):
            raise BadPayload("replies is not a list", reason="bad_shape")
        return PageResult(records=[comment_record(reply, task.bvid) for reply in replies])


def _page_count(data: dict[str, Any]) -> int:
    page = data.get("page")
    if not isinstance(page, dict) or "count" not in page:
        raise BadPayload("page 1 without data.page.count", reason="bad_shape")
    return int(page["count"])


def comment_record(comment: dict[str, Any], bvid: str) -> dict[str, Any]:
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
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPayload(f"malformed comment: {exc!r}", reason="bad_shape") from None
