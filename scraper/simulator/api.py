"""The comment API's answers: one method per endpoint, request in, (status, code, body) out.

Gates of the "real" profile, in the order the service applies them on the
cursor endpoint: WBI signature (-403), device identity (-352), parameters
(-400), the video (-404 / 12002), then login (logged out: ~3 roots and
``is_end``). Legacy and thread endpoints need no signature and no buvid3, only
login past page 1; legacy pages past the depth cap answer -400.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from scraper.simulator.access import DeviceIds, WbiKeys, cookies, is_browser
from scraper.simulator.corpus import Corpus
from scraper.simulator.model import SimVideo
from scraper.simulator.options import SimulatorOptions
from scraper.simulator.pages import Pages, error_body, mode2_offset, mode3_offset, ok_body
from scraper.simulator.render import Renderer
from scraper.simulator.wire import (
    NOT_FOUND,
    Answer,
    BadRequest,
    Caller,
    PageCache,
    comment_params,
    int_param,
)
from scraper.videos import bvid_to_aid

_CLOSED = error_body(12002, "评论区已关闭")
_ROOT_GONE = error_body(12022, "已经被删除了")
_MAX_OFFSET = error_body(-400, "max offset exceeded")
_BAD_SIGNATURE = error_body(-403, "访问权限不足")
LOGGED_OUT_ROOTS = 3  # what the cursor endpoint shows without login
_HOME = (
    b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>scraper simulator</title></head>'
    b"<body><p>bundled comment-API simulator</p></body></html>"
)


class Api:
    """Every endpoint of one simulator, over one corpus."""

    def __init__(self, corpus: Corpus, options: SimulatorOptions) -> None:
        self.corpus = corpus
        self.options = options
        self.renderer = Renderer(corpus)
        self.pages = Pages(corpus, self.renderer)
        self.cache = PageCache(int(options.cache_mb * 1024 * 1024))
        self.keys = WbiKeys(options.seed, options.key_rotate_s)
        self.devices = DeviceIds(options.seed)
        self.hostile = options.hostile
        self.max_page = options.legacy_cap(corpus.max_page)

    # -- who is asking --------------------------------------------------------------

    def logged_in(self, caller: Caller) -> bool:
        session = self.options.session
        return bool(session) and cookies(caller.cookie).get("SESSDATA") == session

    def _sees_all(self, caller: Caller) -> bool:
        return not self.hostile or self.logged_in(caller)

    def _version(self, video: SimVideo) -> int:
        return self.corpus.changes.version if self.corpus.changed(video) else 0

    def _commentable(self, oid: int) -> SimVideo | bytes:
        """The video whose comments are asked for, or the API's error body."""
        video = self.corpus.video(oid)
        if video is None or video.state == "deleted":
            return NOT_FOUND
        if video.state == "closed":
            return _CLOSED
        return video

    def _cached(self, key: tuple[int, ...], render: Callable[..., bytes], *args: Any, **kwargs: Any) -> bytes:
        body = self.cache.get(key)
        if body is None:
            body = self.cache.put(key, render(*args, **kwargs))
        return body

    # -- identity and keys ------------------------------------------------------------

    def nav(self, params: dict[str, str], caller: Caller) -> Answer:
        if self.logged_in(caller):
            mid = 10_000 + self.options.seed
            data = {"isLogin": True, "mid": mid, "uname": f"sim_user_{mid}", "wbi_img": self.keys.nav_img()}
            return Answer(200, 0, ok_body(data))
        data = {"isLogin": False, "wbi_img": self.keys.nav_img()}
        return Answer(200, -101, error_body(-101, "账号未登录", data))

    def spi(self, params: dict[str, str], caller: Caller) -> Answer:
        b3, b4 = self.devices.new()
        return Answer(200, 0, ok_body({"b_3": b3, "b_4": b4}))

    def home(self, params: dict[str, str], caller: Caller) -> Answer:
        if not is_browser(caller.user_agent):
            return Answer(200, 200, _HOME, "text/html")
        b3, _ = self.devices.new()
        nut = str(int(time.time()))
        return Answer(200, 200, _HOME, "text/html", (("buvid3", b3), ("b_nut", nut)))

    # -- comments -------------------------------------------------------------------------

    def legacy(self, params: dict[str, str], caller: Caller) -> Answer:
        oid, pn, ps = comment_params(params)
        video = self._commentable(oid)
        if isinstance(video, bytes):
            return Answer(200, -404 if video is NOT_FOUND else 12002, video)
        corpus = self.corpus
        if self.max_page and (pn - 1) * ps >= self.max_page * corpus.page_size:
            return Answer(200, -400, _MAX_OFFSET)
        if pn > 1 and not self._sees_all(caller):
            return Answer(200, 0, self.pages.legacy_hidden(video))
        start = (pn - 1) * ps
        return Answer(200, 0, self.pages.legacy(video, pn, ps, self._listed(video, start, start + ps)))

    def thread(self, params: dict[str, str], caller: Caller) -> Answer:
        oid, pn, ps = comment_params(params)
        root = int_param(params, "root")
        video = self._commentable(oid)
        if isinstance(video, bytes):
            return Answer(200, -404 if video is NOT_FOUND else 12002, video)
        ref = self.corpus.root(video, root)
        if ref is None:
            return Answer(200, 12006, error_body(12006, "没有该评论"))
        if ref.gone:
            return Answer(200, 12022, _ROOT_GONE)
        hidden = pn > 1 and not self._sees_all(caller)
        key = (1, video.aid, self._version(video), root, pn, ps, hidden)
        return Answer(200, 0, self._cached(key, self.pages.thread, video, ref, pn, ps, hidden=hidden))

    def cursor(self, params: dict[str, str], caller: Caller) -> Answer:
        if self.hostile:
            if not self.keys.verify(params):
                return Answer(200, -403, _BAD_SIGNATURE)
            if not cookies(caller.cookie).get("buvid3") or not is_browser(caller.user_agent):
                voucher = f"voucher_{self.devices.new()[0][:36].lower()}"
                return Answer(200, -352, error_body(-352, "-352", {"v_voucher": voucher}))
        if params.get("type") != "1":
            raise BadRequest("type")
        oid = int_param(params, "oid")
        mode = int_param(params, "mode", 3)
        if mode not in (2, 3):
            raise BadRequest("mode")
        offset = self._offset(params.get("pagination_str", ""), mode)
        video = self._commentable(oid)
        if isinstance(video, bytes):
            return Answer(200, -404 if video is NOT_FOUND else 12002, video)
        first = offset == 0 if mode == 2 else offset == 1
        if not self._sees_all(caller):
            key: tuple[int, ...] = (4, video.aid, self._version(video), mode, first)
            return Answer(200, 0, self._cached(key, self._logged_out, video, mode, first=first))
        if mode == 2:
            return Answer(200, 0, self.newest_page(video, offset))
        key = (3, video.aid, self._version(video), offset)
        return Answer(200, 0, self._cached(key, self.hot_page, video, offset))

    def _offset(self, pagination_str: str, mode: int) -> int:
        """Mode 2: the rpid to resume below (0 = first page); mode 3: the page number."""
        try:
            pagination = orjson.loads(pagination_str) if pagination_str else {"offset": ""}
            offset = pagination.get("offset", "")
            if not offset:
                return 0 if mode == 2 else 1
            inner = orjson.loads(offset)
            if mode == 2 and inner.get("type") == 3:
                value = int(inner["Data"]["cursor"])
            elif mode == 3 and inner.get("type") == 1:
                value = int(inner["data"]["pn"])
            else:
                raise BadRequest("pagination_str")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            raise BadRequest("pagination_str") from None
        if value <= 0:
            raise BadRequest("pagination_str")
        return value

    def _listed(self, video: SimVideo, start: int, stop: int) -> bytes:
        """Listed roots ``start``..``stop``, rendered once for legacy and cursor pages alike.

        Only these runs of comments are cached, not whole bodies: the envelope
        is a cheap ``bytes %`` per request, and a crawl that mixes legacy pages
        with the cursor chain (both 20 roots at multiples of 20) needs one copy.
        """
        return self._cached((5, video.aid, self._version(video), start, stop), self.renderer.listed, video, start, stop)

    def newest_page(self, video: SimVideo, cursor: int) -> bytes:
        corpus = self.corpus
        ps = corpus.page_size
        start = 0 if cursor == 0 else corpus.list_position(video, cursor)
        stop = min(start + ps, corpus.list_len(video))
        replies = self._listed(video, start, start + ps)
        last = corpus.list_rpid(video, stop - 1) if stop > start else 0
        more = stop < corpus.list_len(video)
        return self.pages.cursor(
            video, 2, replies, first=cursor == 0, next_offset=mode2_offset(last) if more else "", next_value=last
        )

    def hot_page(self, video: SimVideo, pn: int) -> bytes:
        ps = self.corpus.page_size
        order = self.renderer.hot_order(video)
        chosen = order[(pn - 1) * ps : pn * ps]
        more = pn * ps < len(order)
        replies = self.renderer.rpids(video, chosen)
        return self.pages.cursor(
            video, 3, replies, first=pn == 1, next_offset=mode3_offset(pn + 1) if more else "", next_value=pn + 1
        )

    def _logged_out(self, video: SimVideo, mode: int, *, first: bool) -> bytes:
        """Without login: the first few roots and ``is_end``, whatever the page asked for."""
        if mode == 2:
            replies = self.renderer.listed(video, 0, LOGGED_OUT_ROOTS) if first else b""
        else:
            replies = self.renderer.rpids(video, self.renderer.hot_order(video)[:LOGGED_OUT_ROOTS]) if first else b""
        return self.pages.cursor(video, mode, replies, first=first, next_offset="", next_value=0)

    def count(self, params: dict[str, str], caller: Caller) -> Answer:
        if params.get("type") != "1":
            raise BadRequest("type")
        video = self._commentable(int_param(params, "oid"))
        if isinstance(video, bytes):
            return Answer(200, -404 if video is NOT_FOUND else 12002, video)
        return Answer(200, 0, self.pages.count(video))

    def view(self, params: dict[str, str], caller: Caller) -> Answer:
        if params.get("bvid"):
            try:
                aid = bvid_to_aid(params["bvid"])
            except ValueError:
                raise BadRequest("bvid") from None
        else:
            aid = int_param(params, "aid")
        video = self.corpus.video(aid)
        if video is None or video.state == "deleted":
            return Answer(200, -404, NOT_FOUND)
        return Answer(200, 0, self.pages.view(video))

    # -- warming ------------------------------------------------------------------------

    def warm(self) -> int:
        """Render every run of roots and every thread page a complete crawl asks for; returns how many.

        A crawl asks for each page about once, so without this every request
        pays a first render plus fresh memory (measured: ~270 us of server CPU
        per request instead of ~120 us). Runs of 20 roots serve legacy and
        mode-2 cursor pages alike. Stops when the cache is full.
        """
        corpus = self.corpus
        ps = corpus.page_size
        warmed = 0
        for video in corpus.videos:
            if video.state != "ok":
                continue
            for start in range(0, corpus.list_len(video), ps):
                if self.cache.full:
                    return warmed
                self._listed(video, start, start + ps)
                warmed += 1
            for ref, pages in corpus.threads(video):
                if ref.gone:
                    continue
                full_ref = corpus.root(video, ref.rpid)
                assert full_ref is not None
                for pn in range(1, pages + 1):
                    if self.cache.full:
                        return warmed
                    key = (1, video.aid, 0, ref.rpid, pn, ps, False)
                    self._cached(key, self.pages.thread, video, full_ref, pn, ps)
                    warmed += 1
        return warmed
