"""`scraper exporter`: queue-level metrics from Redis, one exporter per cluster.

Read at scrape time (a custom collector), so the numbers are never stale and
the exporter keeps no state. It also promotes due retries (see
``_promote_forever``).

Three endpoints, so that Kubernetes tests the process, not its dependencies:

- ``/healthz`` (liveness): the event loop answers and the promotion loop is
  alive. It never touches Redis: a Redis restart must not make Kubernetes
  kill the exporter (CrashLoopBackOff would then delay it further).
- ``/readyz`` (readiness): Redis answers a PING.
- ``/metrics``: the queue metrics; 503 with one line while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from scraper.keys import TargetKeys
from scraper.queue import TaskQueue
from scraper.redis_conn import async_client, describe
from scraper.settings import Settings
from scraper.stats import list_targets, read_gauges

log = logging.getLogger(__name__)

# (name on /metrics, help, field of read_gauges)
_GAUGES = (
    ("scraper_queue_lag", "Tasks not yet delivered to any worker (the backlog)", "queued"),
    ("scraper_queue_pending", "Tasks delivered and not yet settled (in flight)", "in_flight"),
    ("scraper_queue_delayed", "Retries waiting for their backoff", "delayed"),
    ("scraper_dead_letters", "Tasks that exhausted their attempts, currently in the dead-letter stream", "dead"),
)
_COUNTERS = (
    ("scraper_crawl_pages_done_total", "Pages crawled since the target was created or reset", "pages_done"),
    ("scraper_crawl_comments_total", "Comments written since the target was created or reset", "comments"),
)
_REDIS_ERRORS = (OSError, RedisError)
_LOG_EVERY_S = 60.0


class QueueCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: list[dict[str, Any]] = []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for name, help_text, field in _GAUGES:
            gauge = GaugeMetricFamily(name, help_text, labels=["target"])
            for stats in self.snapshot:
                gauge.add_metric([stats["target"]], float(stats[field]))
            yield gauge
        for name, help_text, field in _COUNTERS:
            # CounterMetricFamily takes the name without _total and adds it.
            counter = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=["target"])
            for stats in self.snapshot:
                counter.add_metric([stats["target"]], float(stats[field]))
            yield counter
        consumers = GaugeMetricFamily("scraper_consumers", "Live consumers (with a heartbeat)", labels=["target"])
        rate = GaugeMetricFamily(
            "scraper_rate_limit_effective_requests_per_second",
            "Effective shared request rate of the target's host",
            labels=["target"],
        )
        for stats in self.snapshot:
            consumers.add_metric([stats["target"]], float(stats["consumers"]))
            if stats.get("rate_limit"):
                rate.add_metric([stats["target"]], float(stats["rate_limit"].get("effective_rate", 0.0)))
        yield consumers
        yield rate


async def _target_stats(client: Any, keys: TargetKeys) -> dict[str, Any]:
    """Queue stats plus the shared limiter of the host the coordinator set up."""
    base_url = await client.hget(keys.meta, "base_url")
    host = urlparse(base_url.decode()).netloc if base_url else None
    return await read_gauges(client, keys, limiter_host=host)


class _Throttled:
    """One log line per interval for a repeating failure, with a count."""

    def __init__(self, interval_s: float = _LOG_EVERY_S) -> None:
        self.interval_s = interval_s
        self.last_s = -interval_s
        self.suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last_s < self.interval_s:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        log.warning(message + more, *args)
        self.last_s, self.suppressed = now, 0


async def _promote_forever(client: Any, prefix: str, interval_s: float = 1.0) -> None:
    """Move due retries back into their streams.

    Workers do this too, but KEDA may have scaled them to zero while only
    delayed retries remain: the backlog stays 0 and nobody would ever wake
    up. The exporter runs always (one per cluster), so it turns due retries
    into backlog, which wakes the workers. Without the exporter, those
    retries wait until something else starts a worker.
    """
    warned = _Throttled()
    while True:
        try:
            for target in await list_targets(client, prefix):
                await TaskQueue(client, TargetKeys(target, prefix)).promote_due()
        except _REDIS_ERRORS as exc:  # Redis away, loading, read-only, out of memory: retry
            warned.warn("exporter: cannot promote retries: %s", exc)
        await asyncio.sleep(interval_s)


def build_app(client: Any, prefix: str, promoter: asyncio.Task[None], url: str) -> web.Application:
    registry = CollectorRegistry()
    collector = QueueCollector()
    registry.register(collector)
    warned = _Throttled()

    async def metrics(_: web.Request) -> web.Response:
        try:
            targets = await list_targets(client, prefix)
            collector.snapshot = [await _target_stats(client, TargetKeys(t, prefix)) for t in targets]
        except _REDIS_ERRORS as exc:
            warned.warn("exporter: cannot read Redis at %s: %s", describe(url), exc)
            return web.Response(status=503, text=f"cannot read Redis: {type(exc).__name__}\n")
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if promoter.done():
            return web.Response(status=500, text="retry promotion stopped\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(client.ping(), timeout=2.0)
        except (*_REDIS_ERRORS, TimeoutError) as exc:
            return web.Response(status=503, text=f"Redis not answering: {type(exc).__name__}\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_exporter(
    settings: Settings, url: str, host: str, port: int, *, ready: asyncio.Event | None = None
) -> int:
    # No wait for Redis before serving: the exporter must answer its liveness
    # probe while Redis starts or restarts; /readyz reports Redis instead.
    client = async_client(url, socket_timeout=10)
    prefix = settings.redis.key_prefix
    promoter = asyncio.create_task(_promote_forever(client, prefix))
    runner = web.AppRunner(build_app(client, prefix, promoter, url), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("exporter on %s:%d (/metrics, /healthz, /readyz)", host, port)
    if ready is not None:
        ready.set()
    try:
        await promoter
    finally:
        promoter.cancel()
        await runner.cleanup()
        await client.aclose()
    return 0
