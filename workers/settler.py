"""Settling: flush the sink, THEN apply a batch of outcomes to Redis in one call.

The fetch coroutines add outcomes to ``pending``; every ``interval_s`` the
settler swaps it for an empty batch and settles the swapped one. A swapped
batch is kept (``settling``) until Redis confirmed it: a stop, a cancellation
or an outage never loses it, and the next settle sends it again first.

``held`` is the consumer's ledger of every entry it claimed and has not yet
settled (local queue, limiter, in flight, in a batch): an entry leaves it only
when the batch acknowledging it is confirmed, so unsettled pages count against
the claim capacity and a worker that cannot settle stops claiming.

``waiting`` holds successful outcomes whose lines wait for an upload (object
storage, workers.uploads); they join ``pending`` once the segment is in the
bucket, and count as batched meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from scraper.queue import SettleBatch, TaskQueue
from scraper.settle import Outcome
from scraper.sinks import JsonlSink
from scraper.sinks_s3 import S3SegmentSink
from scraper.tasks import Task
from workers.redis_policy import RedisGuard
from workers.telemetry import Telemetry

log = logging.getLogger(__name__)


class Settler:
    def __init__(
        self,
        *,
        queue: TaskQueue,
        sink: JsonlSink | S3SegmentSink,
        guard: RedisGuard,
        telemetry: Telemetry,
        interval_s: float,
        on_settled: Callable[[], None],
    ) -> None:
        self.queue = queue
        self.sink = sink
        self.guard = guard
        self.telemetry = telemetry
        self.interval_s = interval_s
        self.on_settled = on_settled
        self.held: dict[bytes, Task] = {}
        self.pending = SettleBatch()  # outcomes not yet settled; swapped whole
        self.settling: SettleBatch | None = None  # swapped out, not yet confirmed
        self.waiting: list[Outcome] = []  # done, lines not yet uploaded (object storage)
        self.last_settled = time.time()
        self._lock = asyncio.Lock()
        # Set when a batch holds follow-ups while the consumer has nothing left to
        # fetch: settling them now, not at the next tick, is the only way it gets
        # more work (a short job's crawl is a few such hops, each up to a tick).
        self.starving = asyncio.Event()

    @property
    def unsettled(self) -> int:
        return len(self.held)

    def release(self, entries: list[tuple[bytes, Task]]) -> None:
        """Hand entries back to the queue untouched (re-added, then acknowledged)."""
        batch = self.pending
        for entry_id, task in entries:
            batch.release(entry_id, task)

    def in_batches(self) -> set[bytes]:
        ids = set(self.pending.acks)
        ids.update(outcome.entry_id for outcome in self.waiting)
        if self.settling is not None:
            ids.update(self.settling.acks)
        return ids

    async def run(self, stop: asyncio.Event) -> None:
        """Settle every ``interval_s``, or at once when ``starving``, until ``stop``;
        never cancelled mid-settle by a stop."""
        starving = self.starving
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if not starving.is_set():
                # The tick sets the same event: wait_for() would wrap the wait in a new
                # task and cancel it on every timeout, 50 times a second.
                tick = loop.call_later(self.interval_s, starving.set)
                try:
                    await starving.wait()
                finally:
                    tick.cancel()
            starving.clear()
            await self.settle_now()

    async def settle_now(self) -> None:
        """Flush the lines, then settle; raises OutputFailure (nothing of the batch applied)."""
        async with self._lock:
            if self.settling is None:
                if not self.pending:
                    return
                self.settling, self.pending = self.pending, SettleBatch()
                try:
                    self.sink.flush()  # lines on disk before the acknowledgement
                except BaseException:
                    # Nothing of this batch may be acknowledged: its lines are
                    # not (all) on disk. The consumer hands back what it holds.
                    self.sink.discard()
                    self.settling = None
                    raise
            batch = self.settling
            await self.guard.call(lambda: self.queue.settle(batch), writes=True)
            self.settling = None
            for entry_id in batch.acks:
                self.held.pop(entry_id, None)
            self.last_settled = time.time()
        self.telemetry.settled(batch)
        self.on_settled()
