"""Request identity: configured headers, the device cookie and the secret login cookie reach
the site (and only the site), never the logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from threading import Thread

import orjson
import pytest
from aiohttp import web

from scraper.targets.bilibili_identity import cookie_allowed, parse_cookie
from tests.conftest import free_port
from tests.helpers import cli_env, coordinate, run_cli, stats_json

COOKIE = "SESSDATA=s3cr3t-value; buvid3=abc"


@pytest.fixture
def recording_site() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real aiohttp server that answers like a closed video and records request headers."""
    import asyncio

    seen: list[dict[str, str]] = []
    port = free_port()
    loop = asyncio.new_event_loop()

    async def reply(request: web.Request) -> web.Response:
        seen.append({"path": request.path, **request.headers})
        return web.Response(body=orjson.dumps({"code": 12002, "message": "closed"}), content_type="application/json")

    async def spi(request: web.Request) -> web.Response:
        seen.append({"path": request.path, **request.headers})
        return web.json_response({"code": 0, "data": {"b_3": "DEVICE-B3infoc", "b_4": "B4"}})

    async def nav(request: web.Request) -> web.Response:
        seen.append({"path": request.path, **request.headers})
        wbi = {"img_url": "https://i0.hdslb.com/bfs/wbi/" + "a" * 32 + ".png", "sub_url": "x/" + "b" * 32 + ".png"}
        return web.json_response({"code": -101, "message": "not logged in", "data": {"wbi_img": wbi}})

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/x/v2/reply/wbi/main", reply)
        app.router.add_get("/x/v2/reply", reply)
        app.router.add_get("/x/frontend/finger/spi", spi)
        app.router.add_get("/x/web-interface/nav", nav)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(start())
    thread = Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


# auto pages a video by number first (unsigned, no WBI keys needed); cursor signs its pages.
PATHS = {
    "auto": ["/x/frontend/finger/spi", "/x/v2/reply"],
    "cursor": ["/x/frontend/finger/spi", "/x/web-interface/nav", "/x/v2/reply/wbi/main"],
}


@pytest.mark.parametrize(("source", "paging"), [("env", "auto"), ("file", "auto"), ("env", "cursor")])
def test_headers_and_cookie(
    tmp_path: Path, redis_url: str, recording_site: tuple[str, list[dict[str, str]]], source: str, paging: str
) -> None:
    base_url, seen = recording_site
    extra = {"SCRAPER_COOKIE": COOKIE} if source == "env" else {"SCRAPER_HTTP_COOKIE_FILE": str(tmp_path / "cookie")}
    (tmp_path / "cookie").write_text(COOKIE + "\n")
    env = cli_env(tmp_path, SCRAPER_HTTP_USER_AGENT="my-agent/1.0", SCRAPER_TARGET_ROOT_PAGING=paging, **extra)
    videos = tmp_path / "v.txt"
    videos.write_text("av170001\n")
    common = ["--target", "video-list", "--redis-url", redis_url]
    coordinate(env, common, videos, base_url)
    work = run_cli(
        [
            "work",
            *common,
            "--processes",
            "1",
            "--concurrency",
            "2",
            "--rate-limit",
            "0",
            "--burst",
            "--output-dir",
            str(tmp_path / "out"),
            "--log-level",
            "DEBUG",
        ],
        env,
        timeout=60,
    )
    assert work.returncode == 0, work.stderr
    assert [s["path"] for s in seen] == PATHS[paging]
    page = seen[-1]
    # the crawler's device cookie merged with the user's (the user's buvid3 wins)
    assert parse_cookie(page["Cookie"]) == {"buvid3": "abc", "buvid4": "B4", "SESSDATA": "s3cr3t-value"}
    assert "Cookie" not in seen[0]  # the device lookup needs no login
    assert all(s["User-Agent"] == "my-agent/1.0" and s["Referer"] == "https://www.bilibili.com" for s in seen)
    stats = stats_json(redis_url, env)
    assert stats["final"] == {"closed": 1}
    everything = work.stdout + work.stderr + orjson.dumps(stats).decode()
    assert "s3cr3t" not in everything


def test_health_probe(tmp_path: Path) -> None:
    import os
    import time

    beats = tmp_path / "beats"
    env = cli_env(tmp_path)
    missing = run_cli(["health", "--heartbeat-dir", str(beats)], env)
    assert missing.returncode == 1 and "no worker heartbeat" in missing.stderr
    beats.mkdir()
    beat = beats / "pod-1-0.beat"
    beat.touch()
    assert run_cli(["health", "--heartbeat-dir", str(beats)], env).returncode == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = run_cli(["health", "--heartbeat-dir", str(beats), "--max-age", "30"], env)
    assert stale.returncode == 1


@pytest.mark.parametrize(
    ("url", "host", "allowed"),
    [
        ("https://api.bilibili.com/x/v2/reply", "api.bilibili.com", True),
        ("http://api.bilibili.com/x/v2/reply", "api.bilibili.com", False),  # never in clear text
        ("https://evil.example/x/v2/reply", "api.bilibili.com", False),  # a base URL stored in Redis
        ("https://api.bilibili.com.evil.example/", "api.bilibili.com", False),
        ("http://127.0.0.1:8088/x/v2/reply", "api.bilibili.com", True),  # tests, the simulator
        ("http://[::1]:8088/", "", True),
        ("http://localhost:8088/", "", True),
        ("https://api.bilibili.com/", "", False),
    ],
)
def test_the_login_cookie_goes_only_to_the_target(url: str, host: str, allowed: bool) -> None:
    assert cookie_allowed(url, host) is allowed


def test_a_stored_base_url_elsewhere_gets_no_login_cookie(tmp_path: Path, redis_url: str) -> None:
    """Issue 12: workers crawl the base URL the coordinator stored; the cookie stays with the configured host."""
    import asyncio

    import aiohttp
    import redis.asyncio as aioredis

    from scraper.keys import TargetKeys
    from scraper.settings import HttpSettings
    from scraper.targets.base import AdapterContext
    from scraper.targets.bilibili_identity import Identity

    async def check() -> None:
        client = aioredis.Redis.from_url(redis_url)
        async with aiohttp.ClientSession() as session:
            http = HttpSettings(cookie="SESSDATA=s3cr3t-value")
            context = AdapterContext(client, TargetKeys("t"), session, http, cookie_host="api.bilibili.com")
            elsewhere = Identity(context, "https://mirror.example.org")
            assert not elsewhere.logged_in
            assert "s3cr3t" not in elsewhere.cookie({"buvid3": "x"})
            home = Identity(context, "https://api.bilibili.com")
            assert home.logged_in and "SESSDATA=s3cr3t-value" in home.cookie({"buvid3": "x"})
        await client.aclose()

    asyncio.run(check())
