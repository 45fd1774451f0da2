"""The request path: each API request is counted, rate-limited, delayed, maybe faulted, answered.

``Simulator.dispatch`` serves every request (aiohttp's low-level server: no
router, no middleware), with one dict lookup on the path; ``/_sim/*`` goes to
``admin`` and is never faulted, limited or counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from scraper.simulator.admin import Admin
from scraper.simulator.api import Api
from scraper.simulator.corpus import Corpus
from scraper.simulator.faults import Fault, FaultPlan, RateLimiter, retry_after_header
from scraper.simulator.options import SimulatorOptions
from scraper.simulator.pages import error_body
from scraper.simulator.stats import Stats
from scraper.simulator.wire import JSON, NOT_FOUND, Answer, BadRequest, Caller, PageCache

_BAD_REQUEST = Answer(200, -400, error_body(-400, "bad request"))
_OVERLOADED = error_body(-503, "服务调用超时")
_BANNED_JSON = error_body(-412, "request was banned")
_BANNED_HTML = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>412 Precondition Failed</title></head>'
    "<body><h1>412</h1><p>request rejected by security control</p>"
    "<p>由于触发哔哩哔哩安全风控策略，该次访问请求被拒绝。</p></body></html>"
).encode()
_STATUS_TEXT = {500: b"500 Internal Server Error", 503: b"503 Service Unavailable"}
_UNKNOWN = "other"  # stats bucket of paths the API does not have


class Simulator:
    """State of one running simulator: the API, faults, limits, stats."""

    def __init__(self, corpus: Corpus, options: SimulatorOptions) -> None:
        self.corpus = corpus
        self.options = options
        self.api = Api(corpus, options)
        self.stats = Stats()
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
        api = self.api
        self._endpoints: dict[str, Callable[[dict[str, str], Caller], Answer]] = {
            "/x/v2/reply": api.legacy,
            "/x/v2/reply/wbi/main": api.cursor,
            "/x/v2/reply/reply": api.thread,
            "/x/v2/reply/count": api.count,
            "/x/web-interface/view": api.view,
            "/x/web-interface/nav": api.nav,
            "/x/frontend/finger/spi": api.spi,
            "/": api.home,
        }
        self.admin = Admin(self)

    @property
    def cache(self) -> PageCache:
        return self.api.cache

    def warm(self) -> int:
        return self.api.warm()

    # -- the request path -----------------------------------------------------

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request, from the low-level server or the Application route."""
        if request.path.startswith("/_sim/"):
            return await self.admin.handle(request)
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        return await self.handle(request)

    def _endpoint_name(self, path: str) -> str:
        path = path.rstrip("/") or "/"
        return path if path in self._endpoints else _UNKNOWN

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        endpoint = self._endpoint_name(request.path)
        self.stats.request(endpoint)
        if self.limiter is not None:
            wait_s = self.limiter.check(request.remote or "-", time.monotonic())
            if wait_s is not None:
                return await self._refuse(endpoint, wait_s)
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self.faults is not None:
            fault = self.faults.decide(request.raw_path)
            if fault is not None:
                return await self._fault(request, endpoint, fault)
        return self._respond(endpoint, self.answer(request))

    def _respond(self, endpoint: str, answer: Answer) -> web.Response:
        self.stats.status(answer.status)
        self.stats.answer(endpoint, str(answer.code) if answer.content_type == JSON else f"http {answer.status}")
        response = web.Response(body=answer.body, status=answer.status, content_type=answer.content_type)
        for name, value in answer.cookies:
            response.set_cookie(name, value, path="/", max_age=31_536_000)
        return response

    def answer(self, request: web.BaseRequest) -> Answer:
        """The answer to one API request, faults aside."""
        endpoint = self._endpoints.get(request.path.rstrip("/") or "/")
        if endpoint is None:
            return Answer(404, -404, NOT_FOUND)
        headers = request.headers
        caller = Caller(headers.get("Cookie"), headers.get("User-Agent"))
        try:
            # yarl's C unquoter: ~10x faster than urllib's on a signed pagination_str
            return endpoint(dict(request.query), caller)
        except BadRequest:
            return _BAD_REQUEST

    async def _refuse(self, endpoint: str, wait_s: float) -> web.Response:
        self.stats.banned_requests += 1
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        options = self.options
        if options.throttle_status == 429:
            self.stats.status(429)
            self.stats.answer(endpoint, "-429")
            return web.Response(
                status=429,
                body=error_body(-429, "too many requests"),
                content_type=JSON,
                headers={"Retry-After": retry_after_header(wait_s)},
            )
        self._refusals += 1
        html = options.ban_shape == "html" or (options.ban_shape == "mixed" and self._refusals % 2 == 1)
        if html:
            self.stats.status(412)
            self.stats.answer(endpoint, "http 412")
            return web.Response(status=412, body=_BANNED_HTML, content_type="text/html", charset="utf-8")
        self.stats.status(200)
        self.stats.answer(endpoint, "-412")
        return web.Response(body=_BANNED_JSON, content_type=JSON)

    async def _fault(self, request: web.BaseRequest, endpoint: str, fault: Fault) -> web.StreamResponse:
        self.stats.faults[fault.kind] += 1
        if fault.kind == "slow":
            await asyncio.sleep(self.options.slow_ms / 1000.0)
            return self._respond(endpoint, self.answer(request))
        if fault.kind == "fail":
            shape = fault.variant % 3
            if shape == 2:
                self.stats.status(200)
                self.stats.answer(endpoint, "-503")
                return web.Response(body=_OVERLOADED, content_type=JSON)
            status = 500 if shape == 0 else 503
            self.stats.status(status)
            self.stats.answer(endpoint, f"http {status}")
            return web.Response(status=status, body=_STATUS_TEXT[status], content_type="text/plain")
        self.stats.answer(endpoint, f"fault {fault.kind}")
        if fault.kind == "reset":
            _drop_connection(request, reset=True)
            # aiohttp sees the closed transport when it writes this and lets it go.
            return web.Response(status=204)
        answer = self.answer(request)
        self.stats.status(answer.status)
        half = answer.body[: len(answer.body) // 2]
        if fault.kind == "bad_json":
            return web.Response(body=half, status=answer.status, content_type=answer.content_type)
        # truncate: promise the whole body, deliver half, hang up.
        response = web.StreamResponse(status=answer.status)
        response.content_type = answer.content_type
        response.content_length = len(answer.body)
        await response.prepare(request)
        await response.write(half)
        _drop_connection(request, reset=False)
        return response

    # -- /_sim ------------------------------------------------------------------

    def stats_dict(self) -> dict[str, Any]:
        stats = self.stats.as_dict()
        stats["cache"] = {"pages": len(self.api.cache), "bytes": self.api.cache.bytes}
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
