"""Request identity: configured headers and the secret cookie reach the site, never the logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from threading import Thread

import orjson
import pytest
from aiohttp import web

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
        seen.append(dict(request.headers))
        return web.Response(body=orjson.dumps({"code": 12002, "message": "closed"}), content_type="application/json")

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/x/v2/reply", reply)
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


@pytest.mark.parametrize("source", ["env", "file"])
def test_headers_and_cookie(
    tmp_path: Path, redis_url: str, recording_site: tuple[str, list[dict[str, str]]], source: str
) -> None:
    base_url, seen = recording_site
    extra = {"SCRAPER_COOKIE": COOKIE} if source == "env" else {"SCRAPER_HTTP_COOKIE_FILE": str(tmp_path / "cookie")}
    (tmp_path / "cookie").write_text(COOKIE + "\n")
    env = cli_env(tmp_path, SCRAPER_HTTP_USER_AGENT="my-agent/1.0", **extra)
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
    assert len(seen) == 1
    assert seen[0]["Cookie"] == COOKIE
    assert seen[0]["User-Agent"] == "my-agent/1.0"
    assert seen[0]["Referer"] == "https://www.bilibili.com"
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
