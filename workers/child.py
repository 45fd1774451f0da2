"""Entry point of one worker process (spawned by aiomultiprocess, uvloop inside).

Everything stateful is built here, inside the child: the Redis client, the one
aiohttp session of the process, the sink, the limiter. Only the picklable
``ChildSpec`` crosses the process boundary.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

from scraper.keys import TargetKeys
from scraper.logs import setup_logging
from scraper.metrics import Recorder
from scraper.objectstore import BucketUrl, is_bucket_url
from scraper.queue import TaskQueue
from scraper.ratelimit import RateLimitConfig, build_limiter
from scraper.redis_conn import async_client
from scraper.settings import Settings
from scraper.sinks import JsonlSink, shard_path
from scraper.sinks_s3 import S3SegmentSink
from scraper.targets import load_adapter
from workers.consumer import Consumer
from workers.heartbeat import Heartbeat, consumer_name
from workers.spec import ChildSpec
from workers.telemetry import Telemetry

log = logging.getLogger(__name__)


def build_session(settings: Settings) -> aiohttp.ClientSession:
    http = settings.http
    concurrency = settings.worker.concurrency
    connector = aiohttp.TCPConnector(
        # The default limit of 100 halves throughput at 50 ms latency (DESIGN.md):
        # one connection per consumer coroutine.
        limit=concurrency,
        limit_per_host=concurrency,
        ttl_dns_cache=300,
        keepalive_timeout=30,
    )
    headers = {"User-Agent": http.user_agent, "Referer": http.referer, "Accept": "application/json"}
    cookie = http.cookie
    if not cookie and http.cookie_file:
        cookie = Path(http.cookie_file).read_text(encoding="utf-8").strip()
    if cookie:
        headers["Cookie"] = cookie
    timeout = aiohttp.ClientTimeout(total=http.timeout_s, sock_connect=http.connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout, raise_for_status=False)


async def child_main(spec: ChildSpec, index: int) -> None:
    settings = spec.settings
    setup_logging(settings.log.level, settings.log.format)
    # Long-lived objects (session, pools, adapter) never need collecting; moving
    # them out of the young generations and raising the threshold removed most
    # of the GC cost on the hot path (DESIGN.md measurements).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

    keys = TargetKeys(settings.target.name, settings.redis.key_prefix)
    name = consumer_name(index)
    redis_client = async_client(spec.redis_url, max_connections=64)
    session = build_session(settings)
    sink: JsonlSink | S3SegmentSink
    if is_bucket_url(settings.worker.output_dir):
        sink = S3SegmentSink(
            BucketUrl.parse(settings.worker.output_dir),
            settings.target.name,
            settings.s3,
            hold_s=settings.s3.hold_limit_s(settings.worker.claim_idle_s),
        )
        await sink.open()
    else:
        sink = JsonlSink(
            shard_path(Path(settings.worker.output_dir), settings.target.name, index), fsync=settings.worker.fsync
        )
    target = settings.target
    limiter = build_limiter(
        redis_client,
        urlparse(target.base_url).netloc,
        RateLimitConfig(
            rate=target.rate_limit,
            burst=target.rate_burst,
            min_rate=target.min_rate,
            ban_cooldown_s=target.ban_cooldown_s,
            inflight_cap=settings.worker.inflight_per_host,
        ),
        prefix=settings.redis.key_prefix,
    )
    telemetry = Telemetry(Recorder(target.name, spec.metrics_dir))
    heartbeat = Heartbeat(redis_client, keys, name, Path(settings.worker.heartbeat_dir), settings.worker.heartbeat_s)
    consumer = Consumer(
        settings=settings,
        name=name,
        redis_client=redis_client,
        queue=TaskQueue(redis_client, keys, name),
        session=session,
        adapter=load_adapter(target),
        sink=sink,
        limiter=limiter,
        heartbeat=heartbeat,
        telemetry=telemetry,
        burst=spec.burst,
    )
    telemetry.in_flight = lambda: len(consumer.in_flight)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, consumer.request_stop)
    log.info(
        "%s: started (%s, %d coroutines, output %s)",
        name,
        type(loop).__module__,
        settings.worker.concurrency,
        sink.path,
    )
    try:
        await consumer.run()
    finally:
        if isinstance(sink, S3SegmentSink):
            await sink.aclose()
        else:
            sink.close()
        await limiter.close()
        await session.close()
        await redis_client.aclose()
    log.info("%s: stopped after %d pages", name, consumer.pages_done)
