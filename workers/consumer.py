"""The consumer loop of one worker process, readable top to bottom:

    claim (XREADGROUP, batches) -> local queue -> M coroutines: fetch -> parse
    -> sink buffer -> settler: flush sink, THEN one settle call (follow-ups,
    retries, dead letters, counters, XACK+XDEL)       (workers.settler)

Side loops: promote due retries, keep held claims fresh and take over the
entries of dead consumers (workers.leases), heartbeat. Every Redis call goes
through ``RedisGuard`` (workers.redis_policy): one policy per failure class.
No task dies unobserved: a side task that ends stops the process.

Stopping: the first signal stops claiming and drains (finish in flight until
the deadline, hand back the rest, settle); a second one hands back at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from scraper.errors import PageError, Throttled
from scraper.queue import Entry, TaskQueue
from scraper.ratelimit import Limiter, NullLimiter
from scraper.settings import Settings
from scraper.sinks import JsonlSink, OutputFailure
from scraper.targets.base import SiteAdapter
from scraper.tasks import Task
from workers import handback
from workers.fetch import fetch
from workers.handback import stop_tasks
from workers.heartbeat import Heartbeat
from workers.leases import Leases
from workers.outcomes import record_dead, record_failure
from workers.redis_policy import RedisBug, RedisGuard, TargetReset
from workers.settler import Settler
from workers.side_loops import SideLoops
from workers.telemetry import Telemetry

log = logging.getLogger(__name__)
_BURST_BLOCK_MS = 100
FATAL = (TargetReset, RedisBug, OutputFailure)


class Consumer:
    def __init__(
        self,
        *,
        settings: Settings,
        name: str,
        queue: TaskQueue,
        session: aiohttp.ClientSession,
        adapter: SiteAdapter,
        sink: JsonlSink,
        limiter: Limiter,
        heartbeat: Heartbeat,
        telemetry: Telemetry,
        leases: Leases,
        burst: bool,
        guard: RedisGuard | None = None,
    ) -> None:
        self.settings = settings
        self.worker = settings.worker
        self.name = name
        self.queue = queue
        self.session = session
        self.adapter = adapter
        self.limiter = limiter
        self._unlimited = isinstance(limiter, NullLimiter)
        self.heartbeat = heartbeat
        self.telemetry = telemetry
        self.burst = burst
        self.guard = guard or RedisGuard(name)
        self.settler = Settler(
            queue=queue,
            sink=sink,
            guard=self.guard,
            telemetry=telemetry,
            interval_s=self.worker.settle_interval_ms / 1000,
            on_settled=self._progressed,
        )
        self.side = SideLoops(self, leases)
        self.local: asyncio.Queue[Entry] = asyncio.Queue()
        self.in_flight: dict[bytes, Task] = {}
        self.stopping = asyncio.Event()  # stop claiming (drain or burst done)
        self.aborting = asyncio.Event()  # hand back everything now
        self.fatal: BaseException | None = None
        self.capacity = self.worker.concurrency + self.worker.batch_size
        # A burst run checks for the end after each empty claim: a short block
        # lets it exit ~0.1 s after the last page instead of up to block_ms.
        self._block_ms = min(self.worker.block_ms, _BURST_BLOCK_MS) if burst else self.worker.block_ms
        self.slot_freed = asyncio.Event()
        self.pages_done = 0
        self.progress_ts = time.time()
        self.waiting_limiter = 0

    # ---- lifecycle -------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop claiming and drain. Second: hand back in-flight pages now."""
        if self.stopping.is_set():
            if not self.aborting.is_set():
                log.warning("%s: second stop: handing back in-flight pages now", self.name)
                self.aborting.set()
            return
        log.info("%s: stop requested: no more claims, draining in-flight pages", self.name)
        self.stopping.set()

    def fail(self, exc: BaseException) -> None:
        """A task met a fault it cannot ride out: stop, and let run() raise it."""
        if self.fatal is None:
            self.fatal = exc
        self.stopping.set()
        self.aborting.set()

    def _watch(self, task: asyncio.Task[Any]) -> None:
        """Done callback of every background task: none may end unobserved."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None and not self.stopping.is_set():
            exc = RedisBug(f"background task {task.get_name()} ended unexpectedly")
        if exc is not None:
            self.fail(exc)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        task.add_done_callback(self._watch)
        return task

    async def run(self) -> None:
        """Crawl until stopped; raises TargetReset, OutputFailure or RedisBug."""
        await self.guard.call(self.queue.ensure_group, writes=True)
        await self.side.first_beat()
        workers = [self._spawn(self._work_loop(), f"fetch-{i}") for i in range(self.worker.concurrency)]
        settle_stop = asyncio.Event()
        settler = self._spawn(self.settler.run(settle_stop), "settle")
        side = [self._spawn(self.side.maintenance(), "maintenance"), self._spawn(self.side.beat(), "heartbeat")]
        claimer = self._spawn(self._claim_loop(), "claim")
        await self.stopping.wait()
        if isinstance(self.fatal, TargetReset):  # nothing to settle into: the target is gone
            await stop_tasks([claimer, settler, *side, *workers])
            raise self.fatal
        # The claimer finishes its XREADGROUP: a reply cut off by a cancel
        # would leave entries pending under our name that nobody holds.
        await stop_tasks([claimer], grace_s=self._block_ms / 1000 + 1)
        await handback.drain(self, workers)
        settle_stop.set()
        await stop_tasks([settler], grace_s=self.worker.drain_timeout_s)
        await stop_tasks(side)
        if isinstance(self.fatal, OutputFailure):
            self.settler.sink.discard()
            handback.release_all(self)
        if not isinstance(self.fatal, RedisBug):
            await handback.settle_all(self)
            await handback.hand_back_strays(self)
            await self.guard.call(self.heartbeat.remove)
        if self.fatal is not None:
            raise self.fatal

    def _progressed(self) -> None:
        self.progress_ts = time.time()
        self.slot_freed.set()

    # ---- claiming --------------------------------------------------------

    def accept(self, entries: list[Entry]) -> None:
        for entry_id, task in entries:
            self.settler.held[entry_id] = task
            self.local.put_nowait((entry_id, task))

    def free_slots(self) -> int:
        return self.capacity - self.settler.unsettled

    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            await self.guard.writable.wait()  # no claims while Redis refuses writes
            free = self.free_slots()
            if free < min(self.worker.batch_size, self.capacity) // 2 or free <= 0:
                self.slot_freed.clear()
                await self.slot_freed.wait()
                continue
            count = min(free, self.worker.batch_size)
            self.accept(await self.guard.call(partial(self.queue.claim, count, self._block_ms)))
            if self.local.empty() and self.burst and await self._crawl_over():
                log.info("%s: nothing queued, pending or delayed: burst done", self.name)
                self.request_stop()

    async def _crawl_over(self) -> bool:
        if self.settler.unsettled or self.settler.pending or self.settler.settling is not None:
            return False
        return await self.guard.call(self.queue.is_drained)

    # ---- the hot path ----------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            entry_id, task = await self.local.get()
            if entry_id not in self.settler.held:
                continue  # taken over by another consumer while it waited here
            await self.guard.writable.wait()  # no fetching while Redis refuses writes
            self.in_flight[entry_id] = task
            try:
                await self._process(entry_id, task)
            except asyncio.CancelledError:
                raise
            except FATAL as exc:
                self.fail(exc)
                return
            except Exception as exc:  # a bug must not silently eat the page or this coroutine
                log.exception("%s: unexpected error on %s", self.name, task.fingerprint)
                self._failed(entry_id, task, PageError(f"internal error: {exc!r}", reason="internal"))
            finally:
                self.in_flight.pop(entry_id, None)
                self.slot_freed.set()

    async def _process(self, entry_id: bytes, task: Task) -> None:
        started = time.perf_counter()
        try:
            body = await self._fetch(task)
            result = self.adapter.parse(task, body)
        except PageError as exc:
            self.telemetry.request(time.perf_counter() - started, exc.reason)
            self._failed(entry_id, task, exc)
            if isinstance(exc, Throttled):
                await self._tell_limiter(exc)
            return
        self.telemetry.request(time.perf_counter() - started, "ok")
        self.limiter.on_success()
        self.progress_ts = time.time()
        batch = self.settler.pending  # the settler may have swapped it while we awaited
        if result.records:
            self.settler.sink.write(result.records)
        batch.followups.extend(result.followups)
        batch.acks.append(entry_id)
        batch.counters["pages_done"] += 1
        batch.counters["comments"] += len(result.records)
        self.pages_done += 1

    async def _fetch(self, task: Task) -> bytes:
        if self._unlimited:  # no limiter round trips at all on the hot path
            return await fetch(self.session, self.adapter.url(task))
        async with self.limiter.slot():  # cluster-wide in-flight cap (no-op when off)
            self.waiting_limiter += 1
            try:
                await self.guard.call(self.limiter.acquire)
            finally:
                self.waiting_limiter -= 1
            self.progress_ts = time.time()
            return await fetch(self.session, self.adapter.url(task))

    def _failed(self, entry_id: bytes, task: Task, exc: PageError) -> None:
        self.progress_ts = time.time()
        record_failure(self.settler.pending, entry_id, task, exc, worker=self.worker, consumer=self.name)

    def dead_letter(self, entry_id: bytes, task: Task, reason: str, error: str, attempts: int) -> None:
        self.settler.pending.acks.append(entry_id)
        record_dead(self.settler.pending, task, self.name, reason, error, attempts)

    async def _tell_limiter(self, exc: Throttled) -> None:
        log.warning("%s: throttled (%s)", self.name, exc)
        try:
            await self.limiter.on_throttle(exc.retry_after_s)
        except (RedisError, OSError) as redis_exc:  # the page is rescheduled; the next ban tells the limiter
            self.guard.errors.error("ban", "%s: could not record the ban in Redis: %s", self.name, redis_exc)

    def state(self) -> dict[str, Any]:
        """What the heartbeat publishes (stats) and writes for the probe (health)."""
        waiting = self.guard.waiting_for or ("site" if self.waiting_limiter else "")
        return {
            "in_flight": len(self.in_flight),
            "queued_locally": self.local.qsize(),
            "unsettled": self.settler.unsettled,
            "pages_done": self.pages_done,
            "progress_ts": max(self.progress_ts, self.settler.last_settled),
            "waiting": waiting,
        }
