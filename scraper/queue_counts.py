"""How much work a target's queue holds: backlog, in flight, delayed, dead.

The backlog is what the exporter, ``scraper stats`` and the dashboards show
and what KEDA scales on, so it must never read 0 while work waits.

Redis 7 reports the consumer group's ``lag`` in XINFO GROUPS, but reports it
as NULL when it cannot tell: on 7.0 that happens as soon as the group's
last-delivered entry is deleted while older entries are still pending, which
is what every settle (XACK + XDEL of a finished batch) and every drain
hand-back does. KEDA reads that NULL as 0. Redis 6.2 has no lag at all.

The queue's layout makes a lag of our own exact: a settled entry is
acknowledged and deleted in one transaction, so the stream holds only entries
not yet delivered or delivered and pending, and ``XLEN - pending`` is the
backlog. It is used whenever Redis gives no number. All five readings come
from one MULTI/EXEC, so they describe one moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from scraper.keys import CONSUMER_GROUP, TargetKeys


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int  # not yet delivered to the group: the backlog (never NULL)
    in_flight: int  # delivered, not yet settled (pending)
    delayed: int
    dead: int
    length: int  # XLEN: queued + in flight
    lag_reported: bool = True  # False: Redis gave no lag, queued is XLEN - pending


async def read_counts(client: aioredis.Redis, keys: TargetKeys) -> QueueCounts:
    try:
        return await _read_counts(client, keys, transaction=True)
    except ResponseError as exc:
        # Redis past maxmemory refuses every command queued in a MULTI, reads
        # included: read them one after the other then (stats must still say why).
        if not str(exc).startswith("OOM") and "maxmemory" not in str(exc):
            raise
        return await _read_counts(client, keys, transaction=False)


async def _read_counts(client: aioredis.Redis, keys: TargetKeys, *, transaction: bool) -> QueueCounts:
    pipe = client.pipeline(transaction=transaction)
    pipe.xlen(keys.tasks)
    pipe.zcard(keys.delayed)
    pipe.xlen(keys.dead)
    pipe.xpending(keys.tasks, CONSUMER_GROUP)
    pipe.xinfo_groups(keys.tasks)
    # Before the coordinator's first run the stream and group do not exist:
    # XPENDING and XINFO answer errors, which mean "nothing pending".
    length, delayed, dead, summary, groups = await pipe.execute(raise_on_error=False)
    length = _count(length)
    pending = int(summary["pending"]) if isinstance(summary, dict) else 0
    lag = _group_lag(groups) if isinstance(groups, list) else None
    derived = max(length - pending, 0)
    return QueueCounts(
        queued=derived if lag is None else lag,
        in_flight=pending,
        delayed=_count(delayed),
        dead=_count(dead),
        length=length,
        lag_reported=lag is not None,
    )


def _group_lag(groups: list[dict[Any, Any]]) -> int | None:
    for group in groups:
        if _text(group.get("name")) == CONSUMER_GROUP and group.get("lag") is not None:
            return int(group["lag"])
    return None


def _count(value: Any) -> int:
    if isinstance(value, Exception):
        raise value
    return int(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
