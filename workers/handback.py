"""How a consumer stops without losing or stranding a page.

Drain: unstarted pages go back to the queue at once (for the other
consumers), in-flight pages finish until the drain deadline (or a second
stop), the rest is handed back (re-queued and acknowledged, never left
pending). After an output failure the unwritten outcomes are dropped and
every held page goes back. Last, anything still pending under our name that
we do not hold (a claim reply cut off by a cancel) is handed back too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from scraper.queue import SettleBatch
from scraper.sinks import OutputFailure

if TYPE_CHECKING:
    from workers.consumer import Consumer

log = logging.getLogger(__name__)


async def drain(consumer: Consumer, workers: list[asyncio.Task[None]]) -> None:
    """Finish in-flight pages until the deadline (or an abort); hand back the rest."""
    settler = consumer.settler
    while not consumer.local.empty():  # unstarted: back to the queue at once, for the others
        entry_id, task = consumer.local.get_nowait()
        if entry_id in settler.held:
            settler.release([(entry_id, task)])
    if consumer.in_flight and not consumer.aborting.is_set():
        idle = asyncio.ensure_future(_wait_idle(consumer))
        abort = asyncio.ensure_future(consumer.aborting.wait())
        done, _ = await asyncio.wait({idle, abort}, timeout=consumer.worker.drain_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        idle.cancel()
        abort.cancel()
        if not done:
            log.warning("%s: drain timeout: handing back %d unfinished pages", consumer.name, len(consumer.in_flight))
    await stop_tasks(workers)
    release_unsettled(consumer)


def release_unsettled(consumer: Consumer) -> None:
    """Every held page that no batch settles goes back: cancelled mid-fetch,
    waiting for the limiter or for Redis to take writes again."""
    settler = consumer.settler
    batched = settler.in_batches()
    settler.release([(i, t) for i, t in settler.held.items() if i not in batched])


def release_all(consumer: Consumer) -> None:
    """After an output failure: the unwritten outcomes are dropped and their pages go back."""
    consumer.settler.pending = SettleBatch()
    consumer.settler.waiting = []
    release_unsettled(consumer)


async def settle_all(consumer: Consumer) -> None:
    settler = consumer.settler
    while settler.pending or settler.settling is not None:
        try:
            await settler.settle_now()
        except OutputFailure as exc:  # the last flush failed: hand back all of it
            if consumer.fatal is None:
                consumer.fatal = exc
            release_all(consumer)


async def hand_back_strays(consumer: Consumer) -> None:
    """Whatever is still pending under our name now, nobody holds (a claim
    reply cut off by a cancel): give it back rather than leave it to a takeover."""
    leases = consumer.side.leases
    strays = await consumer.guard.call(lambda: leases.refresh([], orphan_idle_ms=0, orphan_limit=100_000))
    if strays.orphans:
        for entry_id, task in strays.orphans:
            consumer.settler.held[entry_id] = task
        consumer.settler.release(strays.orphans)
        await settle_all(consumer)


async def _wait_idle(consumer: Consumer) -> None:
    while consumer.in_flight:
        consumer.slot_freed.clear()
        await consumer.slot_freed.wait()


async def stop_tasks(tasks: list[asyncio.Task[Any]], timeout_s: float = 5.0, grace_s: float = 0.0) -> None:
    """Let tasks end within ``grace_s``, then cancel and wait, bounded: a task
    that swallows its cancellation (a client library racing a timeout against
    it) must not hang the shutdown."""
    live = [task for task in tasks if not task.done()]
    if not live:
        return
    if grace_s > 0:
        _, still = await asyncio.wait(live, timeout=grace_s)
        live = list(still)
    for task in live:
        task.cancel()
    if not live:
        return
    _, stuck = await asyncio.wait(live, timeout=timeout_s)
    for task in stuck:
        log.warning("task %s ignored its cancellation; leaving it behind", task.get_name())
