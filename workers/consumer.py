"""The consumer loop of one worker process, readable top to bottom:

    claim (XREADGROUP, batches) -> local queue -> M coroutines: fetch -> parse
    -> sink buffer -> settler: flush sink, THEN one settle call (follow-ups,
    retries, dead letters, counters, XACK+XDEL)       (workers.settler)

Object storage (``worker.output_dir = s3://...``): a successful page's
whole outcome waits for the upload of its lines before it joins the settle
batch (workers.uploads).

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
from scraper.settle import Outcome
from scraper.sinks import JsonlSink, OutputFailure
from scraper.sinks_s3 import S3SegmentSink
from scraper.targets.base import CredentialsRejected, PageResult, Request, SiteAdapter
from scraper.tasks import Task
from workers import handback
from workers.claims import claim_on_time
from workers.fetch import fetch
from workers.handback import stop_tasks
from workers.heartbeat import Heartbeat
from workers.leases import Leases
from workers.outcomes import record_dead, record_failure
from workers.redis_policy import RedisBug, RedisGuard, TargetReset
from workers.settler import Settler
from workers.side_loops import SideLoops
from workers.telemetry import Telemetry
from workers.uploads import Uploads

log = logging.getLogger(__name__)
_BURST_BLOCK_MS = 25
_INLINE_RENEWALS = 2  # -403 retries right after a key renewal, before the delayed path
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
        sink: JsonlSink | S3SegmentSink,
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
        self.uploads = (
            Uploads(name=name, settler=self.settler, sink=sink, idle=self._idle)
            if isinstance(sink, S3SegmentSink)
            else None
        )
        self.local: asyncio.Queue[Entry] = asyncio.Queue()
        self.in_flight: dict[bytes, Task] = {}
        self.stopping = asyncio.Event()  # stop claiming (drain or burst done)
        self.aborting = asyncio.Event()  # hand back everything now
        self.fatal: BaseException | None = None
        self.capacity = self.worker.concurrency + self.worker.batch_size
        # A burst run checks for the end after each empty claim: a short block
        # lets it exit within ~25 ms of the last page instead of up to block_ms.
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
        if self.uploads is not None:
            side.append(self._spawn(self.uploads.run(), "upload"))
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
        self.settler.starving.set()  # wake it now, not at its next tick
        await stop_tasks([settler], grace_s=self.worker.drain_timeout_s)
        await stop_tasks(side)
        if isinstance(self.fatal, OutputFailure):
            self.settler.sink.discard()
            handback.release_all(self)
        if not isinstance(self.fatal, RedisBug):
            if self.uploads is not None and self.fatal is None:
                await self.uploads.last()  # the drained pages' lines, before their settle
            await handback.settle_all(self)
            await handback.hand_back_strays(self)
            await self.guard.call(self.heartbeat.remove)
        if self.fatal is not None:
            raise self.fatal

    def _idle(self) -> bool:
        """Nothing fetching or queued here: no reason to wait for more lines."""
        return not self.in_flight and self.local.empty()

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
            # Asked before each claim, not after an empty one: a worker that goes idle at
            # the end need not block a whole claim to learn it (workers.claims).
            if self.burst and self.local.empty() and await self._burst_over():
                break
            # Every free slot in one XREADGROUP: claiming at most batch_size a call took
            # ~3 round trips per settle at 128 coroutines, ~5 % more CPU a page (issue 15).
            claimed = await self._claim(free)
            self.accept(claimed)
            if not claimed and self.settler.pending:
                # Nothing to claim: what this worker has not settled yet (follow-ups, or the
                # last acknowledgements a burst's end waits for) is what everyone waits for.
                self.settler.starving.set()

    async def _claim(self, count: int) -> list[Entry]:
        claim = self.guard.call(partial(self.queue.claim, count, self._block_ms))
        if not self.burst:  # a long-running worker: a late empty claim costs nothing
            return await claim
        # A burst's end waits for its last claims: on a quiet server their BLOCK could
        # end up to 100 ms late (workers.claims).
        return await claim_on_time(claim, self._block_ms / 1000, partial(self.guard.call, self.queue.redis.ping))

    async def _burst_over(self) -> bool:
        """A burst run stops once the crawl is over."""
        if not await self._crawl_over():
            return False
        log.info("%s: nothing queued, pending or delayed: burst done", self.name)
        self.request_stop()
        return True

    async def _crawl_over(self) -> bool:
        if self.settler.unsettled or self.settler.pending or self.settler.settling is not None:
            return False
        return await self.guard.call(self.queue.is_drained)

    # ---- the hot path ----------------------------------------------------

    async def _work_loop(self) -> None:
        local, held, writable = self.local, self.settler.held, self.guard.writable
        while True:
            # The waits are awaited only when they would wait: an await of a coroutine
            # that returns at once still costs its creation, per page.
            entry_id, task = local.get_nowait() if local.qsize() else await local.get()
            if entry_id not in held:
                continue  # taken over by another consumer while it waited here
            if not writable.is_set():
                await writable.wait()  # no fetching while Redis refuses writes
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
                # A finished page frees no claim slot (that takes its settle, which
                # signals); only a drain waits for the last page in flight. Waking the
                # claimer per page cost a task step per page for nothing.
                if not self.in_flight:
                    self.slot_freed.set()

    async def _process(self, entry_id: bytes, task: Task) -> None:
        renewed: list[str] = []  # -403 refusals retried at once, in this coroutine
        try:
            result = await self._page(task, renewed)
        except PageError as exc:
            self._failed(entry_id, task, exc)
            if isinstance(exc, Throttled) or (isinstance(exc, CredentialsRejected) and exc.cooldown):
                await self._tell_limiter(exc)
            return
        self.progress_ts = time.time()
        outcome = Outcome(entry_id, task, result.followups, len(result.records), ledger=result.ledger)
        counters = outcome.counters  # item assignment: Counter.update(**kw) is a slow Python path
        counters["pages_done"] = 1
        counters["comments"] = len(result.records)
        if result.records:
            self.settler.sink.write(result.records)
        # A chain (cursor pages) goes on in this coroutine for a few pages: a
        # trip through the stream would put each step behind the whole backlog.
        # The pages fetched inline count as part of this entry; if the worker
        # dies first, the entry is fetched again and so is the chain.
        inline = 0  # pages that count toward chain_inline
        while (
            result.continuation is not None
            and (inline < self.worker.chain_inline or _passing(result.continuation))
            and not self.stopping.is_set()
            and self.guard.writable.is_set()  # no new fetches while Redis refuses writes
        ):
            step = result.continuation
            try:
                result = await self._page(step, renewed)
            except PageError:
                break  # the continuation goes through the queue, with its retries
            inline += 0 if _passing(step) else 1
            _merge(outcome, result)
            if result.records:
                self.settler.sink.write(result.records)
            self.pages_done += 1
            self.progress_ts = time.time()
        if result.continuation is not None:
            outcome.followups.append(result.continuation)
        if renewed:  # no zero counters: each is one more HINCRBY in the settle script
            outcome.counters.update(f"retries:{reason}" for reason in renewed)
            outcome.counters["retries"] += len(renewed)
        if self.uploads is not None and outcome.records:
            self.uploads.hold(outcome)  # settles once its lines are in the bucket
        else:
            self.settler.pending.add(outcome)  # the settler may have swapped the batch while we awaited
        self.pages_done += 1
        if self.settler.pending.followups and self.local.empty() and len(self.in_flight) <= 1:
            # This page was the last one fetching here and nothing is queued: the batch's
            # follow-ups are what every coroutine waits for. (While others still fetch,
            # the tick settles: more pages a call, and in a long crawl no extra calls;
            # waking at half idle cost a third more settle calls there.)
            self.settler.starving.set()

    async def _page(self, task: Task, renewed: list[str]) -> PageResult:
        """Fetch and parse one page; a -403 is retried at once after the shared key renewal."""
        started = time.perf_counter()
        request: Request | None = None
        while True:
            try:
                request = await self.adapter.request(task)
                if self._unlimited:  # no limiter round trips, and one coroutine frame less per resume
                    body = await fetch(self.session, request.url, request.headers)
                else:
                    body = await self._fetch(request)
                result = self.adapter.parse(task, body)
                break
            except PageError as exc:
                self.telemetry.request(time.perf_counter() - started, exc.reason)
                if isinstance(exc, CredentialsRejected):  # -403/-352: renewed once, centrally
                    await self.adapter.renew(request, exc)
                    if not exc.cooldown and len(renewed) < _INLINE_RENEWALS:
                        # Stale WBI keys: the renewed keys are good now; waiting
                        # for a delayed retry only risks the next rotation.
                        renewed.append(exc.reason)
                        started = time.perf_counter()
                        continue
                raise
        self.telemetry.request(time.perf_counter() - started, "ok")
        self.limiter.on_success()
        return result

    async def _fetch(self, request: Request) -> bytes:
        """Fetch under the shared rate limit (the unlimited path calls ``fetch`` directly)."""
        async with self.limiter.slot():  # cluster-wide in-flight cap (no-op when off)
            self.waiting_limiter += 1
            try:
                await self.guard.call(self.limiter.acquire)
            finally:
                self.waiting_limiter -= 1
            self.progress_ts = time.time()
            return await fetch(self.session, request.url, request.headers)

    def _failed(self, entry_id: bytes, task: Task, exc: PageError) -> None:
        self.progress_ts = time.time()
        record_failure(self.settler.pending, entry_id, task, exc, settings=self.settings, consumer=self.name)

    def dead_letter(self, entry_id: bytes, task: Task, reason: str, error: str, attempts: int) -> None:
        outcome = self.settler.pending.add(Outcome(entry_id, task))
        record_dead(outcome, self.name, reason, error, attempts)

    async def _tell_limiter(self, exc: PageError) -> None:
        log.warning("%s: throttled (%s)", self.name, exc)
        try:
            await self.limiter.on_throttle(getattr(exc, "retry_after_s", None))
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


def _passing(task: Task) -> bool:
    """A tail chain's page the legacy pages already hold: fetched only to reach the
    pages past them (its records are known, its threads open), so it is followed
    inline without limit instead of waiting behind the queue every few pages."""
    return 0 < task.page <= task.tail


def _merge(outcome: Outcome, page: PageResult) -> None:
    """Fold a page fetched inline into its chain's outcome (one ledger delta for both)."""
    outcome.followups.extend(page.followups)
    outcome.records += len(page.records)
    # A page followed inline was never enqueued: it becomes known as it is done,
    # so progress (done of known) never passes 100%.
    counters = outcome.counters
    counters["pages_done"] += 1
    counters["pages_known"] += 1
    counters["comments"] += len(page.records)
    delta, more = outcome.ledger, page.ledger
    delta.threads.extend(more.threads)
    delta.reason = delta.reason or more.reason
    delta.short_code = more.short_code or delta.short_code
    if delta.expected is None:
        delta.expected = more.expected
    if more.tail is not None:  # a probe followed inline was refused: the cursor takes over
        delta.tail, delta.refused_page = more.tail, more.refused_page
