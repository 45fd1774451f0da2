"""Entry point of one worker process (spawned by aiomultiprocess, uvloop inside).

Everything stateful is built here, inside the child: the Redis client, the one
aiohttp session of the process, the sink, the limiter. Only the picklable
``ChildSpec`` crosses the process boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

from scraper.errors import ScraperError
from scraper.keys import TargetKeys
from scraper.logs import setup_logging
from scraper.metrics import Recorder
from scraper.objectstore import BucketUrl, is_bucket_url
from scraper.queue import TaskQueue
from scraper.ratelimit import RateLimitConfig, build_limiter
from scraper.redis_conn import async_client
from scraper.settings import Settings
from scraper.sinks import JsonlSink, OutputFailure, shard_path
from scraper.sinks_s3 import S3SegmentSink
from scraper.targets import load_adapter
from scraper.targets.base import AdapterContext
from workers.consumer import Consumer
from workers.exits import EXIT_BUG, EXIT_OUTPUT, EXIT_RESET
from workers.heartbeat import Heartbeat, consumer_name
from workers.leases import Leases
from workers.redis_policy import RedisBug, TargetReset
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
    timeout = aiohttp.ClientTimeout(total=http.timeout_s, sock_connect=http.connect_timeout_s)
    # No session-wide Cookie and no cookie jar: the adapter sets cookies per
    # request, so the login cookie goes only where its policy allows.
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=timeout,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _cookie_host(settings: Settings) -> str:
    """Where the login cookie may go: the configured host, never a base URL read from Redis."""
    return settings.http.cookie_host or (urlparse(settings.target.base_url).hostname or "")


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
    name = consumer_name(index, spec.run_id)
    try:
        sink = await open_sink(settings, index)
    except ScraperError as exc:  # OutputFailure, or no credentials for the bucket
        log.error("%s: %s: stopping", name, exc)
        _exit_now(EXIT_OUTPUT)
    redis_client = async_client(spec.redis_url, max_connections=64)
    session = build_session(settings)
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
        queue=TaskQueue(redis_client, keys, name, target.complete_ratio),
        session=session,
        adapter=load_adapter(
            target, AdapterContext(redis_client, keys, session, settings.http, _cookie_host(settings))
        ),
        sink=sink,
        limiter=limiter,
        heartbeat=heartbeat,
        telemetry=telemetry,
        leases=Leases(redis_client, keys, name, dead_after_s=dead_after_s(settings)),
        burst=spec.burst,
    )
    telemetry.in_flight = lambda: len(consumer.in_flight)
    # A file bigger than RLIMIT_FSIZE must be an error (EFBIG) we report, not a signal that kills.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
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
    code = 0
    try:
        await consumer.run()
    except TargetReset as exc:
        log.warning("%s: the target was reset under this worker (%s): stopping cleanly", name, exc)
        code = EXIT_RESET
    except OutputFailure as exc:
        log.error("%s: %s: stopped claiming, handed back every unsettled page", name, exc)
        code = EXIT_OUTPUT
    except RedisBug as exc:
        # One line, not a traceback per page; the supervisor restarts us and
        # the other consumers take our pages over at once.
        log.error("%s: unexpected Redis error, restarting this process: %s", name, exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(heartbeat.mark_dead(), timeout=2)
        code = EXIT_BUG
    finally:
        with contextlib.suppress(OutputFailure):
            if isinstance(sink, S3SegmentSink):
                await sink.aclose()  # anything left is unacknowledged: fetched again elsewhere
            else:
                sink.close()
        await limiter.close()
        await session.close()
        await redis_client.aclose()
    log.info("%s: stopped after %d pages", name, consumer.pages_done)
    if code:
        _exit_now(code)


async def open_sink(settings: Settings, index: int) -> JsonlSink | S3SegmentSink:
    """A local shard, or a bucket sink for an ``s3://`` output (credentials checked now)."""
    worker = settings.worker
    if is_bucket_url(worker.output_dir):
        sink = S3SegmentSink(
            BucketUrl.parse(worker.output_dir),
            settings.target.name,
            settings.s3,
            hold_s=settings.s3.hold_limit_s(worker.claim_idle_s),
        )
        await sink.open()
        return sink
    return JsonlSink(shard_path(Path(worker.output_dir), settings.target.name, index), fsync=worker.fsync)


def dead_after_s(settings: Settings) -> float:
    """A heartbeat this old proves its consumer dead: five missed beats, at least 10 s."""
    return max(5 * settings.worker.heartbeat_s, 10.0)


def _exit_now(code: int) -> None:
    """Exit with ``code`` without aiomultiprocess logging a traceback for SystemExit."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
