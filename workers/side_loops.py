"""The consumer's side loops: promote due retries, keep claims fresh, take over the dead, heartbeat.

Every Redis call goes through the consumer's ``RedisGuard``; an error of the
target-reset or bug class propagates and ends the loop, which the consumer
observes (a done callback) and turns into a stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from workers.heartbeat import prune_consumers
from workers.leases import Leases

if TYPE_CHECKING:
    from workers.consumer import Consumer

log = logging.getLogger(__name__)


class SideLoops:
    def __init__(self, consumer: Consumer, leases: Leases) -> None:
        self.consumer = consumer
        self.leases = leases
        worker = consumer.worker
        # A held entry is re-claimed to ourselves three times per lease: it
        # never reaches the idle time at which anything would take it over.
        # At most every 10 s: the same pass finds orphans, which must not wait long.
        self.refresh_s = min(max(worker.claim_idle_s / 3, 0.5), 10.0)
        # An entry pending under our name that we have not held for this long
        # is an orphan (a Redis restart brought an acknowledged entry back).
        self.orphan_idle_ms = int((2 * self.refresh_s + 2) * 1000)
        self.takeover_every_s = 0.5 if consumer.burst else 1.0
        self._seen_reconnects = 0

    async def first_beat(self) -> None:
        """Beat before the first claim: a consumer without a heartbeat looks dead."""
        consumer = self.consumer
        try:
            await consumer.heartbeat.beat(consumer.state())
        except (OSError, RedisError):
            consumer.heartbeat.write_file(consumer.state())

    async def beat(self) -> None:
        # A heartbeat is a plain HSET, refused under OOM and on a replica: its
        # success is the probe that reopens claiming and fetching. (Scripts
        # that happen not to write succeed while writes are refused.)
        await self.consumer.heartbeat.run(self.consumer.state, on_ok=self.consumer.guard.writes_accepted)

    async def maintenance(self) -> None:
        consumer = self.consumer
        guard = consumer.guard
        last_refresh = last_takeover = time.monotonic()
        while True:
            await asyncio.sleep(0.25 if consumer.burst else 0.5)
            await guard.call(consumer.queue.promote_due)
            now = time.monotonic()
            if now - last_refresh >= self.refresh_s or guard.reconnects != self._seen_reconnects:
                self._seen_reconnects = guard.reconnects
                last_refresh = now
                await self.refresh()
            if now - last_takeover >= self.takeover_every_s and not consumer.stopping.is_set():
                last_takeover = now
                await self.take_over()

    async def refresh(self) -> None:
        """Keep held claims fresh; drop what was taken from us; take our orphans home."""
        consumer = self.consumer
        settler = consumer.settler
        held = list(settler.held)
        limit = 0 if consumer.stopping.is_set() else max(consumer.free_slots(), 0)
        result = await consumer.guard.call(
            lambda: self.leases.refresh(held, orphan_idle_ms=self.orphan_idle_ms, orphan_limit=limit)
        )
        busy = set(consumer.in_flight) | settler.in_batches()
        lost = [entry_id for entry_id in result.lost if entry_id in settler.held and entry_id not in busy]
        for entry_id in lost:  # not started yet: the work loop skips it
            settler.held.pop(entry_id, None)
        if lost:
            log.warning("%s: %d waiting pages were taken over by another consumer; skipping them", consumer.name,
                        len(lost))  # fmt: skip
        if result.orphans:
            log.warning(
                "%s: %d pages pending under our name that we do not hold (Redis restarted?): finishing them",
                consumer.name,
                len(result.orphans),
            )
            consumer.settler.pending.counters["orphans"] += len(result.orphans)
            consumer.accept(result.orphans)

    async def take_over(self) -> None:
        """Claim at once the entries of consumers whose heartbeat proves them dead."""
        consumer = self.consumer
        guard = consumer.guard
        if guard.back_at is not None and time.monotonic() - guard.back_at < self.leases.dead_after_s:
            return  # after an outage every heartbeat looks old: give the living time to beat
        free = consumer.free_slots()
        if free <= 0:
            return
        result = await guard.call(lambda: self.leases.take_over(free))
        if not result.entries:
            return
        log.info("%s: took over %d pages of dead consumers %s", consumer.name, len(result.entries),
                 ", ".join(result.dead))  # fmt: skip
        consumer.settler.pending.counters["reclaimed"] += len(result.entries)
        fresh = []
        for (entry_id, task), deliveries in result.entries:
            if deliveries > consumer.worker.max_attempts:
                # Delivered again and again, never settled: a page that kills
                # its worker. Park it rather than crash every consumer in turn.
                consumer.settler.held[entry_id] = task
                consumer.dead_letter(entry_id, task, "poison", f"delivered {deliveries} times without settling",
                                     deliveries)  # fmt: skip
                continue
            fresh.append((entry_id, task))
        consumer.accept(fresh)
        await self._prune()

    async def _prune(self) -> None:
        worker = self.consumer.worker
        try:
            await prune_consumers(
                self.consumer.queue.redis,
                self.consumer.queue.keys,
                keep=self.consumer.name,
                idle_limit_ms=int(max(worker.claim_idle_s * 4, 600) * 1000),
                heartbeat_max_age_s=max(worker.claim_idle_s * 2, 60.0),
            )
        except (RedisError, OSError):
            return  # housekeeping: the next takeover tries again
