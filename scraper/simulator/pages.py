"""Page bodies in the real API's envelopes, from the renderer's comments.

Everything is UTF-8 JSON bytes; the app caches what is worth caching.
Shapes (as DESIGN.md "The target" describes the service):

* legacy ``/x/v2/reply``: ``data.page {num, size, count (listed roots), acount
  (every comment)}``, ``data.replies``, the pinned comment in
  ``data.upper.top`` and ``data.top_replies`` on page 1 only;
* cursor ``/x/v2/reply/wbi/main``: ``data.cursor {is_begin, prev, next,
  is_end, mode, mode_text, all_count, support_mode, name, pagination_reply
  {next_offset} or {} at the end}``, ``data.replies``, the pinned comment in
  ``data.top.upper`` and ``data.top_replies`` on the first page only;
* threads ``/x/v2/reply/reply``: ``data.page {num, size, count (rcount)}``,
  ``data.root``, ``data.replies``.
"""

from __future__ import annotations

from typing import Any

import orjson

from scraper.simulator.corpus import Corpus, RootRef
from scraper.simulator.model import SimVideo
from scraper.simulator.render import Renderer

_LEGACY = (
    b'{"code":0,"message":"0","ttl":1,"data":{"page":{"num":%d,"size":%d,"count":%d,"acount":%d},'
    b'"replies":[%b],"upper":{"mid":%d,"top":%b},"top_replies":[%b]}}'
)
_LEGACY_HIDDEN = (
    b'{"code":0,"message":"0","ttl":1,"data":{"page":{"num":0,"size":0,"count":0,"acount":0},'
    b'"replies":null,"upper":{"mid":%d,"top":null},"top_replies":null}}'
)
_THREAD = (
    b'{"code":0,"message":"0","ttl":1,"data":{"page":{"num":%d,"size":%d,"count":%d},'
    b'"replies":%b,"root":%b,"upper":{"mid":%d}}}'
)
_CURSOR = (
    b'{"code":0,"message":"0","ttl":1,"data":{"cursor":{"is_begin":%b,"prev":%d,"next":%d,"is_end":%b,'
    b'"mode":%d,"mode_text":"%b","all_count":%d,"support_mode":[2,3],"name":"%b","pagination_reply":%b,'
    b'"session_id":""},"replies":[%b],"top":{"admin":null,"upper":%b,"vote":null},"top_replies":[%b],'
    b'"upper":{"mid":%d},"up_selection":{"pending_count":0,"ignore_count":0}}}'
)
_MODE_TEXT = {2: "最新评论".encode(), 3: "热门评论".encode()}


def ok_body(data: Any) -> bytes:
    return orjson.dumps({"code": 0, "message": "0", "ttl": 1, "data": data})


def error_body(code: int, message: str, data: Any = None) -> bytes:
    body: dict[str, Any] = {"code": code, "message": message, "ttl": 1}
    if data is not None:
        body["data"] = data
    return orjson.dumps(body)


def mode2_offset(cursor: int) -> str:
    """The opaque ``next_offset`` of a newest-first page: resume below rpid ``cursor``."""
    return orjson.dumps({"type": 3, "direction": 1, "Data": {"cursor": cursor}}).decode()


def mode3_offset(pn: int) -> str:
    """The opaque ``next_offset`` of a hot page: page ``pn`` next."""
    return orjson.dumps({"type": 1, "direction": 1, "data": {"pn": pn}}).decode()


class Pages:
    def __init__(self, corpus: Corpus, renderer: Renderer) -> None:
        self.corpus = corpus
        self.renderer = renderer
        self._pinned_bodies: dict[int, tuple[int, bytes]] = {}  # aid -> (changes version, body)

    def _pinned(self, video: SimVideo) -> bytes | None:
        """The pinned comment with its preview, rendered once per version of the video."""
        if not video.has_pinned:
            return None
        version = self.corpus.changes.version if self.corpus.changed(video) else 0
        cached = self._pinned_bodies.get(video.aid)
        if cached is not None and cached[0] == version:
            return cached[1]
        ref = self.corpus.pinned(video)
        assert ref is not None
        body = self.renderer.root(video, ref)
        self._pinned_bodies[video.aid] = (version, body)
        return body

    def legacy(self, video: SimVideo, pn: int, ps: int, replies: bytes) -> bytes:
        """``/x/v2/reply`` page ``pn`` around its rendered ``replies`` (past the end: none)."""
        pinned = self._pinned(video) if pn == 1 else None
        corpus = self.corpus
        return _LEGACY % (
            pn,
            ps,
            corpus.list_len(video),
            corpus.all_count(video),
            replies,
            video.upper_mid,
            pinned or b"null",
            pinned or b"",
        )

    def legacy_hidden(self, video: SimVideo) -> bytes:
        """A legacy page past page 1 without login: code 0, nothing in it."""
        return _LEGACY_HIDDEN % video.upper_mid

    def thread(self, video: SimVideo, ref: RootRef, pn: int, ps: int, *, hidden: bool = False) -> bytes:
        """``/x/v2/reply/reply`` page ``pn`` (past the end: empty; ``hidden``: replies null)."""
        start = (pn - 1) * ps
        replies = b"null" if hidden else b"[%b]" % self.renderer.replies(video, ref, start, start + ps)
        rcount = self.corpus.rcount(video, ref)
        return _THREAD % (pn, ps, rcount, replies, self.renderer.root(video, ref), video.upper_mid)

    def cursor(
        self, video: SimVideo, mode: int, replies: bytes, *, first: bool, next_offset: str, next_value: int
    ) -> bytes:
        """A cursor page; an empty ``next_offset`` marks the end."""
        pinned = self._pinned(video) if first else None
        pagination = orjson.dumps({"next_offset": next_offset} if next_offset else {})
        text = _MODE_TEXT[mode]
        return _CURSOR % (
            b"true" if first else b"false",
            0,
            next_value,
            b"false" if next_offset else b"true",
            mode,
            text,
            self.corpus.all_count(video),
            text,
            pagination,
            replies,
            pinned or b"null",
            pinned or b"",
            video.upper_mid,
        )

    def count(self, video: SimVideo) -> bytes:
        return ok_body({"count": self.corpus.all_count(video)})

    def view(self, video: SimVideo) -> bytes:
        return ok_body(
            {
                "aid": video.aid,
                "bvid": video.bvid,
                "title": video.title,
                "pubdate": video.ctime_base - 3_600,
                "owner": {"mid": video.upper_mid, "name": f"UP主{video.upper_mid % 10_000}"},
                "stat": {"aid": video.aid, "reply": self.corpus.all_count(video) if video.state == "ok" else 0},
            }
        )
