"""The HTTP boundary against a real in-process aiohttp server: every failure becomes our error type."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from scraper.errors import BadPayload, ConnectionFailed, FetchTimeout, PageUnavailable, ServerError, Throttled
from tests.conftest import free_port
from workers.fetch import fetch


async def _truncated(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": "1000", "Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"code": 0, "data"')
    request.transport.close()  # type: ignore[union-attr]
    return response


async def _slow(_: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({})


def _fixed(response: web.Response):  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.Response:
        return response

    return handler


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/ok", _fixed(web.Response(body=b'{"code":0}')))
    app.router.add_get(
        "/412",
        _fixed(
            web.Response(status=412, text="<html>request rejected by security control</html>", content_type="text/html")
        ),
    )
    app.router.add_get("/429", _fixed(web.Response(status=429, headers={"Retry-After": "7"})))
    app.router.add_get("/503", _fixed(web.Response(status=503)))
    app.router.add_get("/404", _fixed(web.Response(status=404)))
    app.router.add_get("/truncated", _truncated)
    app.router.add_get("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_statuses(server: str) -> None:
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        assert await fetch(session, f"{server}/ok") == b'{"code":0}'
        with pytest.raises(Throttled) as banned:
            await fetch(session, f"{server}/412")
        assert banned.value.reason == "banned" and banned.value.retry_after_s is None
        with pytest.raises(Throttled) as limited:
            await fetch(session, f"{server}/429")
        assert limited.value.retry_after_s == 7.0
        with pytest.raises(ServerError):
            await fetch(session, f"{server}/503")
        with pytest.raises(PageUnavailable) as missing:
            await fetch(session, f"{server}/404")
        assert missing.value.kind == "http_4xx"
        with pytest.raises(BadPayload) as cut:
            await fetch(session, f"{server}/truncated")
        assert cut.value.reason == "truncated"
        with pytest.raises(FetchTimeout) as slow:
            await fetch(session, f"{server}/slow")
        assert isinstance(slow.value, TimeoutError)  # generic handlers still work
        with pytest.raises(ConnectionFailed) as refused:
            await fetch(session, f"http://127.0.0.1:{free_port()}/")
        assert isinstance(refused.value, OSError)
