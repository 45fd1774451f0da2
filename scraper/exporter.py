"""`scraper exporter`: queue-level gauges from Redis, one exporter per cluster.

Read at scrape time (a custom collector), so the numbers are never stale and
the exporter keeps no state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import ConnectionError as RedisConnectionError

from scraper.keys import TargetKeys
from scraper.queue import TaskQueue
from scraper.redis_conn import async_client, wait_for_redis
from scraper.settings import Settings
from scraper.stats import list_targets, read_stats

log = logging.getLogger(__name__)

_GAUGES = (
    ("scraper_queue_lag", "Tasks not yet delivered to any worker (what KEDA scales on)", "queued"),
    ("scraper_queue_pending", "Tasks delivered and not yet settled (in flight)", "in_flight"),
    ("scraper_queue_delayed", "Retries waiting for their backoff", "delayed"),
    ("scraper_dead_letters", "Tasks that exhausted their attempts", "dead"),
    ("scraper_pages_done", "Pages crawled so far", "pages_done"),
    ("scraper_comments", "Comments written so far", "comments"),
)


class QueueCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: list[dict[str, Any]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, help_text, field in _GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["target"])
            for stats in self.snapshot:
                family.add_metric([stats["target"]], float(stats[field]))
            yield family
        consumers = GaugeMetricFamily("scraper_consumers", "Live consumers (with a heartbeat)", labels=["target"])
        rate = GaugeMetricFamily(
            "scraper_rate_limit_effective", "Effective shared request rate (req/s)", labels=["target"]
        )
        for stats in self.snapshot:
            consumers.add_metric([stats["target"]], float(len(stats["consumers"])))
            if stats.get("rate_limit"):
                rate.add_metric([stats["target"]], float(stats["rate_limit"].get("effective_rate", 0.0)))
        yield consumers
        yield rate


async def _target_stats(client: Any, keys: TargetKeys) -> dict[str, Any]:
    """Queue stats plus the shared limiter of the host the coordinator set up."""
    base_url = await client.hget(keys.meta, "base_url")
    host = urlparse(base_url.decode()).netloc if base_url else None
    return await read_stats(client, keys, limiter_host=host)


async def _promote_forever(client: Any, prefix: str, interval_s: float = 1.0) -> None:
    """Move due retries back into their streams.

    Workers do this too, but KEDA may have scaled them to zero while only
    delayed retries remain: lag stays 0 and nobody would ever wake up. The
    exporter runs always (one per cluster), so it turns due retries into lag.
    """
    while True:
        try:
            for target in await list_targets(client, prefix):
                await TaskQueue(client, TargetKeys(target, prefix)).promote_due()
        except (OSError, RedisConnectionError) as exc:
            log.warning("exporter: cannot promote retries: %s", exc)
        await asyncio.sleep(interval_s)


async def serve_exporter(
    settings: Settings, url: str, host: str, port: int, *, ready: asyncio.Event | None = None
) -> int:
    client = async_client(url)
    await wait_for_redis(client, url, settings.redis.connect_timeout_s)
    registry = CollectorRegistry()
    collector = QueueCollector()
    registry.register(collector)
    prefix = settings.redis.key_prefix

    async def metrics(_: web.Request) -> web.Response:
        targets = await list_targets(client, prefix)
        collector.snapshot = [await _target_stats(client, TargetKeys(t, prefix)) for t in targets]
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("exporter on %s:%d/metrics", host, port)
    if ready is not None:
        ready.set()
    try:
        await _promote_forever(client, prefix)
    finally:
        await runner.cleanup()
        await client.aclose()
    return 0
