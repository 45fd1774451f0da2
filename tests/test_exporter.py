"""`scraper exporter` against a real redis-server that comes and goes.

Kubernetes probes the exporter's /healthz (liveness) and /readyz (readiness):
a Redis restart must make it unready, never dead, and it must come back on
its own. Its crawl totals are Prometheus counters named *_total.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from scraper.exporter import serve_exporter
from scraper.keys import TargetKeys
from scraper.metrics import QUEUE_METRIC_TYPES
from scraper.queue import TaskQueue
from scraper.settings import Settings
from scraper.tasks import MAIN, Task
from tests.conftest import RedisServer, free_port


@pytest.fixture
async def exporter(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, str]]:
    """An exporter started while its Redis is down, and that Redis (not started)."""
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis")
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_exporter(Settings(), server.url, "127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), timeout=10)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.stop()


async def _get(base: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(base + path) as response:
        return response.status, await response.text()


async def _until(base: str, path: str, status: int) -> str:
    for _ in range(100):
        code, body = await _get(base, path)
        if code == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never answered {status}")


async def test_liveness_does_not_depend_on_redis(exporter: tuple[RedisServer, str]) -> None:
    server, base = exporter
    # Redis not there yet: alive, not ready, no metrics (one line, no traceback).
    assert await _get(base, "/healthz") == (200, "ok\n")
    assert (await _get(base, "/readyz"))[0] == 503
    status, body = await _get(base, "/metrics")
    assert status == 503 and body.startswith("cannot read Redis")

    await asyncio.to_thread(server.start)
    await _until(base, "/readyz", 200)
    client = aioredis.Redis(port=server.port)
    queue = TaskQueue(client, TargetKeys("video-list"))
    await queue.ensure_group()
    await queue.enqueue([Task(kind=MAIN, oid=5, page=p) for p in (1, 2, 3)])
    await client.hset(TargetKeys("video-list").stats, mapping={"pages_done": 7, "comments": 140})
    await client.aclose()

    families = {f.name: f for f in text_string_to_metric_families(await _until(base, "/metrics", 200))}
    for name, kind in QUEUE_METRIC_TYPES.items():
        family = families[name.removesuffix("_total")]
        assert family.type == kind, name
    samples = {s.name: s for f in families.values() for s in f.samples}
    assert samples["scraper_crawl_pages_done_total"].value == 7
    assert samples["scraper_crawl_comments_total"].value == 140
    assert samples["scraper_queue_lag"].value == 3
    assert samples["scraper_queue_lag"].labels == {"target": "video-list"}
    assert "scraper_pages_done" not in samples and "scraper_comments" not in samples  # the old gauge names

    # A Redis restart: unready for a while, alive throughout, back by itself.
    await asyncio.to_thread(server.stop)
    await _until(base, "/readyz", 503)
    assert await _get(base, "/healthz") == (200, "ok\n")
    await asyncio.to_thread(server.start)
    await _until(base, "/readyz", 200)
    assert "scraper_queue_lag" in await _until(base, "/metrics", 200)
