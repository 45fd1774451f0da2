"""The simulator's HTTP face: a Bilibili-shaped comment API on aiohttp.

Every request goes through one coroutine (``Simulator.dispatch``, served by
aiohttp's low-level server: no router, no middleware) and one dict lookup on
the path. An API request is counted, rate-limited, delayed, maybe faulted,
then answered from the page cache (warmed before serving) or rendered.
``/_sim/stats`` and ``/_sim/reset`` are never faulted, limited or counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson
from aiohttp import web

from scraper.simulator.corpus import Corpus, SimVideo
from scraper.simulator.faults import Fault, FaultPlan, RateLimiter, retry_after_header
from scraper.simulator.render import Renderer, error_body
from scraper.simulator.stats import Stats
from scraper.videos import bvid_to_aid


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    seed: int = 1
    videos: int = 24
    comments: int = 5000
    page_size: int = 20
    max_page: int = 0  # main-comment pages past this answer -400; 0 = no cap
    latency_ms: float = 0.0  # added to every API response
    fail_rate: float = 0.0  # HTTP 500, HTTP 503 or JSON code -503 (picked by the fault's hash)
    truncate_rate: float = 0.0  # full Content-Length, half the body, then close
    bad_json_rate: float = 0.0  # HTTP 200 with invalid JSON
    slow_rate: float = 0.0  # wait slow_ms, then answer normally
    slow_ms: float = 3000.0
    reset_rate: float = 0.0  # drop the connection without any response
    max_faults_per_url: int = 2  # so a client with >= max + 1 attempts always completes
    rate_limit: float = 0.0  # requests/s per client address (token bucket); 0 = none
    rate_burst: int = 5
    ban_seconds: float = 10.0
    ban_shape: str = "mixed"  # "html" (HTTP 412 page) | "json" (200, code -412) | "mixed" (in turn)
    throttle_status: int = 412  # 412 = ban as above; 429 = HTTP 429 + Retry-After, no ban
    cache_mb: float = 256.0  # rendered page bodies kept (LRU); 333k comments take ~200 MB
    warm_cache: bool = True  # render every page a crawl asks for before serving (up to cache_mb)

    def __post_init__(self) -> None:
        if self.ban_shape not in ("html", "json", "mixed"):
            raise ValueError(f"ban_shape must be html, json or mixed, got {self.ban_shape!r}")
        if self.throttle_status not in (412, 429):
            raise ValueError(f"throttle_status must be 412 or 429, got {self.throttle_status}")
        if self.rate_limit < 0 or self.latency_ms < 0 or self.slow_ms < 0:
            raise ValueError("rate_limit, latency_ms and slow_ms must be >= 0")


class BadRequest(Exception):
    """A query the real API would answer with code -400."""


_JSON = "application/json"
_BAD_REQUEST = error_body(-400, "bad request")
_NOT_FOUND = error_body(-404, "啥都木有")
_CLOSED = error_body(12002, "评论区已关闭")
_MAX_OFFSET = error_body(-400, "max offset exceeded")
_OVERLOADED = error_body(-503, "服务调用超时")
_BANNED_JSON = error_body(-412, "request was banned")
_BANNED_HTML = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>412 Precondition Failed</title></head>'
    "<body><h1>412</h1><p>request rejected by security control</p>"
    "<p>由于触发哔哩哔哩安全风控策略，该次访问请求被拒绝。</p></body></html>"
).encode()
_STATUS_TEXT = {500: b"500 Internal Server Error", 503: b"503 Service Unavailable"}
_MAX_PS = 20


def _params(query_string: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query_string.split("&"):
        key, _, value = part.partition("=")
        params[key] = unquote_plus(value) if "%" in value or "+" in value else value
    return params


def _int(params: dict[str, str], key: str, default: int | None = None) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(key)
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(key) from None


def _comment_params(params: dict[str, str]) -> tuple[int, int, int]:
    """(oid, pn, ps) of a reply endpoint, checked the way the real API does."""
    if params.get("type") != "1":
        raise BadRequest("type")
    oid = _int(params, "oid")
    if oid <= 0:
        raise BadRequest("oid")
    pn = max(1, _int(params, "pn", 1))
    ps = _int(params, "ps", _MAX_PS)
    ps = _MAX_PS if ps <= 0 else min(ps, _MAX_PS)
    return oid, pn, ps


class PageCache:
    """Rendered bodies, least recently used first out past ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self._bodies: OrderedDict[tuple[int, int, int, int, int], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def full(self) -> bool:
        return self.bytes >= self.budget_bytes

    def get(self, key: tuple[int, int, int, int, int]) -> bytes | None:
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
        return body

    def put(self, key: tuple[int, int, int, int, int], body: bytes) -> bytes:
        self._bodies[key] = body
        self.bytes += len(body)
        while self.bytes > self.budget_bytes and self._bodies:
            _, old = self._bodies.popitem(last=False)
            self.bytes -= len(old)
        return body


class Simulator:
    """State of one running simulator: corpus, caches, faults, limits, stats."""

    def __init__(self, corpus: Corpus, options: SimulatorOptions) -> None:
        self.corpus = corpus
        self.options = options
        self.renderer = Renderer(corpus)
        self.stats = Stats()
        self.cache = PageCache(int(options.cache_mb * 1024 * 1024))
        self._latency_s = options.latency_ms / 1000.0
        plan = FaultPlan(
            seed=options.seed,
            rates={
                "fail": options.fail_rate,
                "truncate": options.truncate_rate,
                "bad_json": options.bad_json_rate,
                "slow": options.slow_rate,
                "reset": options.reset_rate,
            },
            max_per_url=options.max_faults_per_url,
        )
        self.faults = plan if plan.enabled else None
        self.limiter = (
            RateLimiter(
                rate_per_s=options.rate_limit,
                burst=options.rate_burst,
                ban_s=options.ban_seconds,
                ban_on_limit=options.throttle_status == 412,
            )
            if options.rate_limit > 0
            else None
        )
        self._refusals = 0
        self._endpoints: dict[str, Callable[[dict[str, str]], tuple[int, bytes]]] = {
            "/x/v2/reply": self.main_page,
            "/x/v2/reply/reply": self.reply_page,
            "/x/v2/reply/count": self.count,
            "/x/web-interface/view": self.view,
        }

    # -- the request path -----------------------------------------------------

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request, from the low-level server or the Application route."""
        if request.path.startswith("/_sim/"):
            return await self._admin(request)
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        return await self.handle(request)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.stats.request()
        if self.limiter is not None:
            wait_s = self.limiter.check(request.remote or "-", time.monotonic())
            if wait_s is not None:
                return await self._refuse(wait_s)
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self.faults is not None:
            fault = self.faults.decide(request.raw_path)
            if fault is not None:
                return await self._fault(request, fault)
        status, body = self.answer(request.path, request.query_string)
        self.stats.status(status)
        return web.Response(body=body, status=status, content_type=_JSON)

    def answer(self, path: str, query_string: str) -> tuple[int, bytes]:
        """(HTTP status, body) of one API request, faults aside."""
        endpoint = self._endpoints.get(path.rstrip("/") or "/")
        if endpoint is None:
            return 404, _NOT_FOUND
        try:
            return endpoint(_params(query_string))
        except BadRequest:
            return 200, _BAD_REQUEST

    async def _refuse(self, wait_s: float) -> web.Response:
        self.stats.banned_requests += 1
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        options = self.options
        if options.throttle_status == 429:
            self.stats.status(429)
            return web.Response(
                status=429,
                body=error_body(-429, "too many requests"),
                content_type=_JSON,
                headers={"Retry-After": retry_after_header(wait_s)},
            )
        self._refusals += 1
        html = options.ban_shape == "html" or (options.ban_shape == "mixed" and self._refusals % 2 == 1)
        if html:
            self.stats.status(412)
            return web.Response(status=412, body=_BANNED_HTML, content_type="text/html", charset="utf-8")
        self.stats.status(200)
        return web.Response(body=_BANNED_JSON, content_type=_JSON)

    async def _fault(self, request: web.BaseRequest, fault: Fault) -> web.StreamResponse:
        self.stats.faults[fault.kind] += 1
        if fault.kind == "slow":
            await asyncio.sleep(self.options.slow_ms / 1000.0)
            status, body = self.answer(request.path, request.query_string)
            self.stats.status(status)
            return web.Response(body=body, status=status, content_type=_JSON)
        if fault.kind == "fail":
            shape = fault.variant % 3
            if shape == 2:
                self.stats.status(200)
                return web.Response(body=_OVERLOADED, content_type=_JSON)
            status = 500 if shape == 0 else 503
            self.stats.status(status)
            return web.Response(status=status, body=_STATUS_TEXT[status], content_type="text/plain")
        if fault.kind == "reset":
            _drop_connection(request, reset=True)
            # aiohttp sees the closed transport when it writes this and lets it go.
            return web.Response(status=204)
        status, body = self.answer(request.path, request.query_string)
        self.stats.status(status)
        half = body[: len(body) // 2]
        if fault.kind == "bad_json":
            return web.Response(body=half, status=status, content_type=_JSON)
        # truncate: promise the whole body, deliver half, hang up.
        response = web.StreamResponse(status=status)
        response.content_type = _JSON
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(half)
        _drop_connection(request, reset=False)
        return response

    # -- endpoints --------------------------------------------------------------

    def _main_body(self, video: SimVideo, pn: int, ps: int) -> bytes:
        key = (0, video.aid, 0, pn, ps)
        body = self.cache.get(key)
        if body is None:
            body = self.cache.put(key, self.renderer.main_page(video, pn, ps))
        return body

    def _reply_body(self, video: SimVideo, index: int, pn: int, ps: int) -> bytes:
        key = (1, video.aid, video.root_rpid(index), pn, ps)
        body = self.cache.get(key)
        if body is None:
            body = self.cache.put(key, self.renderer.reply_page(video, index, pn, ps))
        return body

    def warm(self) -> int:
        """Render every page a complete crawl asks for into the cache; returns how many.

        A crawl asks for each page about once, so without this every request
        pays a first render plus fresh memory (measured: ~270 us of server CPU
        per request instead of ~120 us). Warming 333k comments takes ~1-1.5 s.
        Stops when the cache is full.
        """
        corpus = self.corpus
        ps = corpus.page_size
        warmed = 0
        for video in corpus.videos:
            if video.state != "ok":
                continue
            for pn in range(1, -(-corpus.reachable_roots(video) // ps) + 1):
                if self.cache.full:
                    return warmed
                self._main_body(video, pn, ps)
                warmed += 1
            for index, reply_pages in corpus.reply_threads(video):
                for pn in range(1, reply_pages + 1):
                    if self.cache.full:
                        return warmed
                    self._reply_body(video, index, pn, ps)
                    warmed += 1
        return warmed

    def _commentable(self, oid: int) -> SimVideo | bytes:
        """The video whose comments are asked for, or the API's error body."""
        video = self.corpus.video(oid)
        if video is None or video.state == "deleted":
            return _NOT_FOUND
        if video.state == "closed":
            return _CLOSED
        return video

    def main_page(self, params: dict[str, str]) -> tuple[int, bytes]:
        oid, pn, ps = _comment_params(params)
        video = self._commentable(oid)
        if isinstance(video, bytes):
            return 200, video
        corpus = self.corpus
        if corpus.max_page and (pn - 1) * ps >= corpus.max_page * corpus.page_size:
            return 200, _MAX_OFFSET
        return 200, self._main_body(video, pn, ps)

    def reply_page(self, params: dict[str, str]) -> tuple[int, bytes]:
        oid, pn, ps = _comment_params(params)
        root = _int(params, "root")
        video = self._commentable(oid)
        if isinstance(video, bytes):
            return 200, video
        index = video.root_index(root)
        if index is None:
            return 200, _NOT_FOUND
        return 200, self._reply_body(video, index, pn, ps)

    def count(self, params: dict[str, str]) -> tuple[int, bytes]:
        if params.get("type") != "1":
            raise BadRequest("type")
        video = self._commentable(_int(params, "oid"))
        if isinstance(video, bytes):
            return 200, video
        return 200, self.renderer.count(video)

    def view(self, params: dict[str, str]) -> tuple[int, bytes]:
        if params.get("bvid"):
            try:
                aid = bvid_to_aid(params["bvid"])
            except ValueError:
                raise BadRequest("bvid") from None
        else:
            aid = _int(params, "aid")
        video = self.corpus.video(aid)
        if video is None or video.state == "deleted":
            return 200, _NOT_FOUND
        return 200, self.renderer.view(video)

    # -- /_sim ------------------------------------------------------------------

    async def _admin(self, request: web.BaseRequest) -> web.Response:
        if request.path == "/_sim/stats":
            if request.method != "GET":
                return web.Response(status=405, headers={"Allow": "GET"})
            return web.Response(body=orjson.dumps(self.stats_dict()), content_type=_JSON)
        if request.path == "/_sim/reset":
            if request.method != "POST":
                return web.Response(status=405, headers={"Allow": "POST"})
            self.reset()
            return web.Response(body=orjson.dumps({"ok": True}), content_type=_JSON)
        return web.Response(status=404, body=_NOT_FOUND, content_type=_JSON)

    def stats_dict(self) -> dict[str, Any]:
        stats = self.stats.as_dict()
        stats["cache"] = {"pages": len(self.cache), "bytes": self.cache.bytes}
        return stats

    def reset(self) -> None:
        """Zero the stats and forget fault history and bans: the next crawl meets the same faults."""
        self.stats.reset()
        self._refusals = 0
        if self.faults is not None:
            self.faults.reset()
        if self.limiter is not None:
            self.limiter.reset()


def _drop_connection(request: web.BaseRequest, *, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        # SO_LINGER 0: close() sends RST, so the client sees a real "connection reset".
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()  # flushes what was written, then FIN


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def build_app(corpus: Corpus, options: SimulatorOptions) -> web.Application:
    """The simulator as an Application (for aiohttp's test client and embedding).

    ``start_simulator`` serves the same ``Simulator.dispatch`` through aiohttp's
    low-level server instead: no router, no middleware chain, ~20% more
    requests/s. The app's simulator is ``app[SIMULATOR_KEY]``.
    """
    simulator = Simulator(corpus, options)
    app = web.Application()
    app[SIMULATOR_KEY] = simulator
    app.router.add_route("*", "/{path:.*}", simulator.dispatch)
    return app


class RunningSimulator:
    """A simulator serving on a port; ``close()`` stops it."""

    def __init__(self, runner: web.BaseRunner, simulator: Simulator, host: str, port: int) -> None:
        self._runner = runner
        self.simulator = simulator
        self.corpus = simulator.corpus
        self.port = port
        self.url = f"http://{host}:{port}"

    def stats(self) -> dict[str, Any]:
        """The same numbers as ``GET /_sim/stats``."""
        return self.simulator.stats_dict()

    async def close(self) -> None:
        await self._runner.cleanup()


def _corpus_for(options: SimulatorOptions) -> Corpus:
    return Corpus.generate(
        seed=options.seed,
        videos=options.videos,
        comments=options.comments,
        page_size=options.page_size,
        max_page=options.max_page,
    )


async def start_simulator(
    options: SimulatorOptions, *, host: str = "127.0.0.1", port: int = 0, corpus: Corpus | None = None
) -> RunningSimulator:
    """Serve in the running loop. A given ``corpus`` replaces the options' seed/videos/comments/max_page."""
    simulator = Simulator(corpus if corpus is not None else _corpus_for(options), options)
    if options.warm_cache:
        simulator.warm()
    runner = web.ServerRunner(web.Server(simulator.dispatch, access_log=None), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return RunningSimulator(runner, simulator, host, bound_port)


def run_simulator(
    options: SimulatorOptions,
    *,
    host: str,
    port: int,
    write_videos: Path | None,
    corpus: Corpus | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (blocking); uvloop when installed."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(options, host=host, port=port, write_videos=write_videos, corpus=corpus))


async def _serve(
    options: SimulatorOptions, *, host: str, port: int, write_videos: Path | None, corpus: Corpus | None
) -> None:
    corpus = corpus if corpus is not None else _corpus_for(options)
    if write_videos is not None:
        corpus.write_videos(write_videos)
    running = await start_simulator(options, host=host, port=port, corpus=corpus)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(
            f"simulator listening on {running.url} ({len(corpus.videos)} videos, "
            f"{corpus.expected_comment_count()} comments, {corpus.expected_pages()} pages)",
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await running.close()
