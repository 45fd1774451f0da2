"""The task queue on Redis Streams: enqueue once, claim, settle, retry, dead-letter.

Delivery is at-least-once: XREADGROUP -> work -> (flush output) -> settle.
``settle`` is one MULTI/EXEC round trip per batch that, atomically, enqueues a
batch's follow-up pages (deduplicated by fingerprint), schedules its retries,
writes its dead letters and final records, bumps the counters and finally
acknowledges *and deletes* the settled entries. Because every settled entry is
deleted in the same transaction, the stream only ever holds undelivered or
pending work, which makes two things simple and exact:

- the crawl is over when ``XLEN tasks == 0`` and nothing is delayed;
- the backlog is ``XLEN - pending`` (scraper/queue_counts.py), which stays
  right when Redis 7 reports the group's lag as NULL.

Only acknowledged entries are ever deleted, never trimmed.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from scraper import rates
from scraper.keys import CONSUMER_GROUP, TASK_FIELD, TargetKeys, target_index_key
from scraper.queue_counts import QueueCounts as QueueCounts  # re-exported
from scraper.queue_counts import read_counts as read_counts
from scraper.tasks import Task

# KEYS: seen, tasks, stats. ARGV: field name, then (fingerprint, payload) pairs.
# SADD decides: a page whose fingerprint is already in the set is never added again.
_ENQUEUE_LUA = """
local added = 0
for i = 2, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', ARGV[1], ARGV[i + 1])
    added = added + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[3], 'pages_known', added) end
return added
"""

# KEYS: delayed, tasks. ARGV: now_ms, limit, field name.
_PROMOTE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', ARGV[3], member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

Entry = tuple[bytes, Task]  # (stream entry id, task)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class SettleBatch:
    """Everything a batch of finished pages changes in Redis, applied atomically."""

    acks: list[bytes] = field(default_factory=list)
    followups: list[Task] = field(default_factory=list)
    retries: list[tuple[Task, int]] = field(default_factory=list)  # (task, due ms)
    dead: list[dict[str, Any]] = field(default_factory=list)
    final: list[dict[str, Any]] = field(default_factory=list)
    releases: list[Task] = field(default_factory=list)  # handed back untouched (drain)
    counters: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(
            self.acks or self.followups or self.retries or self.releases or self.dead or self.final or self.counters
        )


def _record_fields(record: dict[str, Any]) -> dict[Any, Any]:
    return {k: v if isinstance(v, (str, bytes)) else str(v) for k, v in record.items()}


class TaskQueue:
    """One target's queue, as seen by one consumer (or by the coordinator)."""

    def __init__(self, client: aioredis.Redis, keys: TargetKeys, consumer: str = "coordinator") -> None:
        self.redis = client
        self.keys = keys
        self.consumer = consumer

    async def ensure_group(self) -> None:
        try:
            # "0": entries added before the group existed are delivered too.
            await self.redis.xgroup_create(self.keys.tasks, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.sadd(target_index_key(self.keys.prefix), self.keys.target)

    async def enqueue(self, tasks: list[Task]) -> int:
        """Add the pages not seen before; returns how many were new."""
        added = 0
        chunk = 500  # bound one script's run time: it blocks the server
        for start in range(0, len(tasks), chunk):
            args: list[Any] = [TASK_FIELD]
            for task in tasks[start : start + chunk]:
                args += [task.fingerprint, task.encode()]
            added += int(
                await self.redis.eval(_ENQUEUE_LUA, 3, self.keys.seen, self.keys.tasks, self.keys.stats, *args)
            )
        return added

    async def claim(self, count: int, block_ms: int) -> list[Entry]:
        response: Any = await self.redis.xreadgroup(
            CONSUMER_GROUP, self.consumer, {self.keys.tasks: ">"}, count=count, block=block_ms
        )
        if not response:
            return []
        return [(entry_id, Task.decode(fields[TASK_FIELD.encode()])) for entry_id, fields in response[0][1]]

    async def reclaim_stale(self, min_idle_ms: int, count: int) -> list[tuple[Entry, int]]:
        """Take over entries idle on any consumer; returns (entry, times delivered)."""
        pending: Any = await self.redis.xpending_range(
            self.keys.tasks, CONSUMER_GROUP, min="-", max="+", count=count, idle=min_idle_ms
        )
        if not pending:
            return []
        deliveries = {item["message_id"]: int(item["times_delivered"]) for item in pending}
        claimed: Any = await self.redis.xclaim(
            self.keys.tasks, CONSUMER_GROUP, self.consumer, min_idle_time=min_idle_ms, message_ids=list(deliveries)
        )
        result: list[tuple[Entry, int]] = []
        for entry_id, fields in claimed:
            if not fields:  # deleted under us (settled by its owner just now)
                continue
            # XCLAIM itself counts one more delivery.
            result.append(((entry_id, Task.decode(fields[TASK_FIELD.encode()])), deliveries.get(entry_id, 0) + 1))
        return result

    async def settle(self, batch: SettleBatch) -> None:
        keys = self.keys
        pipe = self.redis.pipeline(transaction=True)
        if batch.followups:
            args: list[Any] = [TASK_FIELD]
            for task in batch.followups:
                args += [task.fingerprint, task.encode()]
            pipe.eval(_ENQUEUE_LUA, 3, keys.seen, keys.tasks, keys.stats, *args)
        for task in batch.releases:
            pipe.xadd(keys.tasks, {TASK_FIELD: task.encode()})
        if batch.retries:
            pipe.zadd(keys.delayed, {task.encode(): due for task, due in batch.retries})
        for record in batch.dead:
            pipe.xadd(keys.dead, _record_fields(record))
        for record in batch.final:
            pipe.xadd(keys.final, _record_fields(record))
        if batch.counters:
            for name, value in batch.counters.items():
                pipe.hincrby(keys.stats, name, value)
            rates.bump(pipe, keys, int(time.time()), batch.counters["pages_done"], batch.counters["comments"])
        if batch.acks:
            pipe.xack(keys.tasks, CONSUMER_GROUP, *batch.acks)
            pipe.xdel(keys.tasks, *batch.acks)
        await pipe.execute()

    async def promote_due(self, limit: int = 500) -> int:
        """Move retries whose backoff has passed back into the stream."""
        return int(
            await self.redis.eval(_PROMOTE_LUA, 2, self.keys.delayed, self.keys.tasks, now_ms(), limit, TASK_FIELD)
        )

    async def is_drained(self) -> bool:
        """Nothing queued, pending or delayed: the crawl of this target is over."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.tasks)
        pipe.zcard(self.keys.delayed)
        length, delayed = await pipe.execute()
        return int(length) == 0 and int(delayed) == 0
