"""The consumer loop of one worker process, readable top to bottom:

    claim (XREADGROUP, batches) -> local queue -> M coroutines: fetch -> parse
    -> sink buffer -> settler: flush sink, THEN one MULTI (follow-ups, retries,
    dead letters, counters, XACK+XDEL)

Side loops: promote due retries, take over entries of dead consumers,
heartbeat. Every Redis call outside the hot path goes through ``_redis_retry``
so an outage is one log line and a reconnect, not a crash.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scraper.errors import PageError, PageUnavailable, Throttled
from scraper.queue import Entry, SettleBatch, TaskQueue, now_ms
from scraper.ratelimit import Limiter, NullLimiter
from scraper.settings import Settings
from scraper.sinks import JsonlSink
from scraper.sinks_s3 import S3SegmentSink, SinkUnavailable
from scraper.targets.base import SiteAdapter
from scraper.tasks import Task
from workers.fetch import fetch
from workers.heartbeat import Heartbeat, prune_consumers
from workers.telemetry import Telemetry

log = logging.getLogger(__name__)
T = TypeVar("T")
_BURST_BLOCK_MS = 100
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class Consumer:
    def __init__(
        self,
        *,
        settings: Settings,
        name: str,
        redis_client: aioredis.Redis,
        queue: TaskQueue,
        session: aiohttp.ClientSession,
        adapter: SiteAdapter,
        sink: JsonlSink | S3SegmentSink,
        limiter: Limiter,
        heartbeat: Heartbeat,
        telemetry: Telemetry,
        burst: bool,
    ) -> None:
        self.settings = settings
        self.worker = settings.worker
        self.name = name
        self.redis = redis_client
        self.queue = queue
        self.session = session
        self.adapter = adapter
        self.sink = sink
        self.limiter = limiter
        self._unlimited = isinstance(limiter, NullLimiter)
        self.heartbeat = heartbeat
        self.telemetry = telemetry
        self.burst = burst
        self.local: asyncio.Queue[Entry] = asyncio.Queue()
        self.in_flight: dict[bytes, Task] = {}
        self.pending = SettleBatch()  # outcomes not yet settled; the settler swaps it whole
        # Object storage: acknowledgements (and page counters) of pages whose
        # lines wait in the open segment; they join ``pending`` once it is uploaded.
        self.uploading = SettleBatch()
        self._holds_acks = isinstance(sink, S3SegmentSink)
        self._starved = False  # the last claim found nothing: held acks need not wait for a fuller segment
        self.stopping = asyncio.Event()  # stop claiming (drain or burst done)
        self.capacity = self.worker.concurrency + self.worker.batch_size
        # A burst run checks for the end after each empty claim: a short block
        # lets it exit ~0.1 s after the last page instead of up to block_ms.
        self._block_ms = min(self.worker.block_ms, _BURST_BLOCK_MS) if burst else self.worker.block_ms
        self._slot_freed = asyncio.Event()
        self._redis_down_since: float | None = None
        self.pages_done = 0

    # ---- lifecycle -------------------------------------------------------

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("%s: stop requested: no more claims, draining in-flight pages", self.name)
            self.stopping.set()

    async def run(self) -> None:
        await self._redis_retry(self.queue.ensure_group)
        workers = [asyncio.create_task(self._work_loop()) for _ in range(self.worker.concurrency)]
        side = [
            asyncio.create_task(self._settle_loop()),
            asyncio.create_task(self._maintenance_loop()),
            asyncio.create_task(self.heartbeat.run(self._heartbeat_state, self.stopping)),
        ]
        if self._holds_acks:
            side.append(asyncio.create_task(self._commit_loop()))
        claimer = asyncio.create_task(self._claim_loop())
        await self.stopping.wait()
        await _stop_tasks([claimer])
        await self._drain(workers)
        await _stop_tasks(side)
        if self._holds_acks:
            try:
                await self._commit_held()
            except SinkUnavailable as exc:  # those pages stay pending: another consumer fetches them again
                log.warning("%s: last segment not uploaded: %s", self.name, exc)
        await self._settle_now()
        await self._redis_retry(self.heartbeat.remove)

    async def _drain(self, workers: list[asyncio.Task[None]]) -> None:
        """Finish in-flight pages until the deadline; hand back what is left."""
        unstarted: list[Entry] = []
        while not self.local.empty():
            unstarted.append(self.local.get_nowait())
        if unstarted:
            self._release([task for _, task in unstarted], [entry_id for entry_id, _ in unstarted])
        if self.in_flight:
            try:
                await asyncio.wait_for(self._wait_idle(), timeout=self.worker.drain_timeout_s)
            except TimeoutError:
                log.warning("%s: drain timeout: handing back %d unfinished pages", self.name, len(self.in_flight))
        unfinished = dict(self.in_flight)
        await _stop_tasks(workers)
        settled = set(self.pending.acks) | set(self.uploading.acks)
        leftover = {entry_id: task for entry_id, task in unfinished.items() if entry_id not in settled}
        if leftover:  # cancelled mid-fetch: give them back to the queue now
            self._release(list(leftover.values()), list(leftover))

    async def _wait_idle(self) -> None:
        while self.in_flight:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def _release(self, tasks: list[Task], entry_ids: list[bytes]) -> None:
        batch = self.pending
        batch.releases.extend(tasks)
        batch.acks.extend(entry_ids)

    # ---- claiming --------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            if isinstance(self.sink, S3SegmentSink) and self.sink.buffered_bytes > 4 * self.sink.options.segment_bytes:
                await asyncio.sleep(0.1)  # uploads are failing or slow: stop taking work, keep memory bounded
                continue
            free = self.capacity - self.local.qsize() - len(self.in_flight)
            if free < min(self.worker.batch_size, self.capacity) // 2 or free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            count = min(free, self.worker.batch_size)
            entries = await self._redis_retry(partial(self.queue.claim, count, self._block_ms))
            self._starved = not entries
            for entry in entries:
                self.local.put_nowait(entry)
            if not entries and self.burst and await self._crawl_over():
                log.info("%s: nothing queued, pending or delayed: burst done", self.name)
                self.request_stop()

    async def _crawl_over(self) -> bool:
        if self.local.qsize() or self.in_flight or self.pending or self.uploading:
            return False
        return await self._redis_retry(self.queue.is_drained)

    # ---- the hot path ----------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            entry_id, task = await self.local.get()
            self.in_flight[entry_id] = task
            try:
                await self._process(entry_id, task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not silently eat the page or this coroutine
                log.exception("%s: unexpected error on %s", self.name, task.fingerprint)
                await self._failed(entry_id, task, PageError(f"internal error: {exc!r}", reason="internal"))
            finally:
                del self.in_flight[entry_id]
                self._slot_freed.set()

    async def _process(self, entry_id: bytes, task: Task) -> None:
        started = time.perf_counter()
        try:
            body = await self._fetch(task)
            result = self.adapter.parse(task, body)
        except PageError as exc:
            self.telemetry.request(time.perf_counter() - started, exc.reason)
            await self._failed(entry_id, task, exc)
            return
        self.telemetry.request(time.perf_counter() - started, "ok")
        self.limiter.on_success()
        batch = self.pending  # the settler may have swapped it while we awaited
        # Follow-ups go out with the next settle either way (enqueueing is
        # deduplicated, so a page fetched again re-adds nothing); the
        # acknowledgement waits for the lines' upload when the sink holds them.
        done = self.uploading if self._holds_acks else batch
        if result.records:
            self.sink.write(result.records)
        batch.followups.extend(result.followups)
        done.acks.append(entry_id)
        done.counters["pages_done"] += 1
        done.counters["comments"] += len(result.records)
        self.pages_done += 1

    async def _fetch(self, task: Task) -> bytes:
        if self._unlimited:  # no limiter round trips at all on the hot path
            return await fetch(self.session, self.adapter.url(task))
        async with self.limiter.slot():  # cluster-wide in-flight cap (no-op when off)
            await self._redis_retry(self.limiter.acquire)
            return await fetch(self.session, self.adapter.url(task))

    async def _failed(self, entry_id: bytes, task: Task, exc: PageError) -> None:
        # Every change to the batch happens before the first await: the
        # settler swaps batches while we wait, and a retry appended to an
        # already-settled batch would be lost.
        batch = self.pending
        batch.acks.append(entry_id)
        if isinstance(exc, PageUnavailable):
            batch.final.append(_record(task, self.name, kind=exc.kind, error=str(exc)))
            batch.counters[f"final:{exc.kind}"] += 1
            batch.counters["pages_final"] += 1
            return
        attempts = task.attempt + 1
        if attempts >= self.worker.max_attempts:
            self._dead(task, exc.reason, str(exc), attempts)
        else:
            delay = self._backoff_s(attempts, exc)
            batch.retries.append((task.retried(), now_ms() + int(delay * 1000)))
            batch.counters[f"retries:{exc.reason}"] += 1
            batch.counters["retries"] += 1
        if isinstance(exc, Throttled):
            batch.counters["bans"] += 1
            log.warning("%s: throttled (%s) on %s", self.name, exc, task.fingerprint)
            try:
                await self.limiter.on_throttle(exc.retry_after_s)
            except REDIS_DOWN as redis_exc:  # the page is already rescheduled; the next ban tells the limiter
                log.warning("%s: could not record the ban in Redis: %s", self.name, redis_exc)

    def _dead(self, task: Task, reason: str, error: str, attempts: int) -> None:
        batch = self.pending
        batch.dead.append(_record(task, self.name, reason=reason, error=error, attempts=attempts))
        batch.counters["dead"] += 1
        log.warning("%s: dead letter %s after %d attempts: %s", self.name, task.fingerprint, attempts, error)

    def _backoff_s(self, attempts: int, exc: PageError) -> float:
        # Exponential with jitter (half to full), so retries of a burst of
        # failures do not come back in lockstep.
        base = min(self.worker.backoff_max_s, self.worker.backoff_base_s * 2 ** (attempts - 1))
        delay = base * (0.5 + random.random() / 2)
        if isinstance(exc, Throttled) and exc.retry_after_s:
            delay = max(delay, exc.retry_after_s)
        return float(delay)

    # ---- settling --------------------------------------------------------

    async def _settle_loop(self) -> None:
        interval = self.worker.settle_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._settle_now()

    async def _settle_now(self) -> None:
        batch, self.pending = self.pending, SettleBatch()
        if not batch:
            return
        if isinstance(self.sink, JsonlSink):
            self.sink.flush()  # lines on disk before the acknowledgement
        await self._redis_retry(lambda: self.queue.settle(batch))
        self.telemetry.settled(batch)

    async def _commit_loop(self) -> None:
        """Object storage: upload the open segment when it is due, then release its acks."""
        assert isinstance(self.sink, S3SegmentSink)
        delay = 0.1
        while True:
            await asyncio.sleep(0.05)
            if not self.sink.due(idle=self._starved and not self.in_flight and self.local.empty()):
                continue
            try:
                await self._commit_held()
            except SinkUnavailable as exc:
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.1

    async def _commit_held(self) -> None:
        assert isinstance(self.sink, S3SegmentSink)
        # No await between the swap and commit()'s synchronous seal: the held
        # acks are exactly the pages whose lines are in the sealed segments.
        held, self.uploading = self.uploading, SettleBatch()
        try:
            await self.sink.commit()
        except BaseException:
            _merge(held, self.uploading)  # still waiting: keep them, in order
            self.uploading = held
            raise
        _merge(self.pending, held)

    # ---- side loops ------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        claim_idle_ms = int(self.worker.claim_idle_s * 1000)
        reclaim_every = max(self.worker.claim_idle_s / 4, 0.5)
        last_reclaim = 0.0
        while True:
            await asyncio.sleep(0.25 if self.burst else 0.5)
            await self._redis_retry(self.queue.promote_due)
            if time.monotonic() - last_reclaim >= reclaim_every:
                last_reclaim = time.monotonic()
                await self._reclaim(claim_idle_ms)

    async def _reclaim(self, claim_idle_ms: int) -> None:
        free = self.capacity - self.local.qsize() - len(self.in_flight)
        if free <= 0 or self.stopping.is_set():
            return
        taken = await self._redis_retry(lambda: self.queue.reclaim_stale(claim_idle_ms, free))
        if not taken:
            return
        log.info(
            "%s: took over %d pages idle for %.0fs on other consumers", self.name, len(taken), claim_idle_ms / 1000
        )
        self.pending.counters["reclaimed"] += len(taken)
        for (entry_id, task), deliveries in taken:
            if deliveries > self.worker.max_attempts:
                # Delivered again and again, never settled: a page that kills
                # its worker. Park it rather than crash every consumer in turn.
                self.pending.acks.append(entry_id)
                self._dead(task, "poison", f"delivered {deliveries} times without settling", deliveries)
                continue
            self.local.put_nowait((entry_id, task))
        await self._cleanup_consumers()

    async def _cleanup_consumers(self) -> None:
        try:
            await prune_consumers(
                self.redis,
                self.queue.keys,
                keep=self.name,
                idle_limit_ms=int(max(self.worker.claim_idle_s * 4, 600) * 1000),
                heartbeat_max_age_s=max(self.worker.claim_idle_s * 2, 60.0),
            )
        except REDIS_DOWN:
            return

    def _heartbeat_state(self) -> dict[str, Any]:
        return {"in_flight": len(self.in_flight), "queued_locally": self.local.qsize(), "pages_done": self.pages_done}

    async def _redis_retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis call; through an outage, reconnect with backoff, log once."""
        delay = 0.1
        while True:
            try:
                result = await call()
            except REDIS_DOWN as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # The client turned our cancellation into a connection or
                    # timeout error: retrying would swallow the cancel for good.
                    raise asyncio.CancelledError from exc
                if self._redis_down_since is None:
                    self._redis_down_since = time.monotonic()
                    log.warning("%s: Redis unreachable (%s); retrying with backoff", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._redis_down_since is not None:
                log.warning("%s: Redis is back after %.1fs", self.name, time.monotonic() - self._redis_down_since)
                self._redis_down_since = None
            return result


async def _stop_tasks(tasks: list[asyncio.Task[None]], timeout_s: float = 5.0) -> None:
    """Cancel and wait, bounded: a task that swallows its cancellation (a
    client library racing a timeout against it) must not hang the shutdown."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
    for task in stuck:
        log.warning("task %s ignored its cancellation; leaving it behind", task.get_name())


def _merge(into: SettleBatch, other: SettleBatch) -> None:
    into.acks.extend(other.acks)
    into.counters.update(other.counters)


def _record(task: Task, consumer: str, **extra: Any) -> dict[str, Any]:
    return {
        "task": orjson.dumps(task.to_dict()).decode(),
        "fingerprint": task.fingerprint,
        "consumer": consumer,
        "first_seen_ms": task.first_seen_ms,
        "failed_at_ms": now_ms(),
        **extra,
    }
