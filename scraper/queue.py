"""The task queue on Redis Streams: seed once per video, claim, settle, retry, dead-letter.

Delivery is at-least-once: XREADGROUP -> work -> (flush output) -> settle.
``settle`` is one pipelined round trip per batch: one EVAL of
``scraper.settle_lua.SETTLE_LUA`` that, per entry, XACKs and only when that
acknowledged it applies the entry's follow-ups, retry, dead letter or final
record, counters and ledger deltas, then XDELs it (at most once per entry);
then the per-second rate buckets. Because every settled entry is deleted in
the same script, the stream only ever holds undelivered or pending work:

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
from scraper.settle import Outcome
from scraper.settle_lua import SEED_LUA, SETTLE_LUA
from scraper.tasks import Task

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
    """The outcomes of a batch of claimed entries (one each), applied in one round trip.

    ``counters`` holds batch-wide counters that belong to no entry (e.g. takeovers).
    """

    outcomes: list[Outcome] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    followups: int = 0  # follow-up tasks of the outcomes add() took: what the batch enqueues

    def __bool__(self) -> bool:
        return bool(self.outcomes or self.counters)

    @property
    def acks(self) -> list[bytes]:
        return [o.entry_id for o in self.outcomes]

    def all_counters(self) -> Counter[str]:
        total = Counter(self.counters)
        for outcome in self.outcomes:
            total.update(outcome.counters)
        return total

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        self.followups += len(outcome.followups)
        return outcome

    def release(self, entry_id: bytes, task: Task) -> None:
        self.add(Outcome(entry_id, task, release=True))


def _record_fields(record: dict[str, Any]) -> dict[Any, Any]:
    return {k: v if isinstance(v, (str, bytes)) else str(v) for k, v in record.items()}


class TaskQueue:
    """One target's queue, as seen by one consumer (or by the coordinator)."""

    def __init__(
        self, client: aioredis.Redis, keys: TargetKeys, consumer: str = "coordinator", complete_ratio: float = 1.0
    ) -> None:
        self.redis = client
        self.keys = keys
        self.consumer = consumer
        self.complete_ratio = complete_ratio  # fetched/expected a video needs to count as complete

    async def ensure_group(self) -> None:
        try:
            # "0": entries added before the group existed are delivered too.
            await self.redis.xgroup_create(self.keys.tasks, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.sadd(target_index_key(self.keys.prefix), self.keys.target)

    async def enqueue(self, tasks: list[Task]) -> int:
        """Add tasks as they are, no dedup and no ledger (tests, tools); returns how many."""
        pipe = self.redis.pipeline(transaction=True)
        for task in tasks:
            pipe.xadd(self.keys.tasks, {TASK_FIELD: task.encode()})
        pipe.hincrby(self.keys.stats, "pages_known", len(tasks))
        await pipe.execute()
        return len(tasks)

    async def seed(self, seeds: list[tuple[Task, str]]) -> int:
        """Enqueue the first page of each (task, bvid) whose video has no ledger yet.

        The ledger hash is the per-video marker: a second coordinate enqueues
        nothing. Returns how many videos were new. Videos are listed in
        ``videos`` in the order given (what ``report`` shows).
        """
        added = 0
        chunk = 200  # bound one script's run time: it blocks the server
        position = int(await self.redis.zcard(self.keys.videos))
        for start in range(0, len(seeds), chunk):
            part = seeds[start : start + chunk]
            ledgers = [self.keys.video(task.oid) for task, _ in part]
            args: list[Any] = [TASK_FIELD]
            for offset, (task, bvid) in enumerate(part):
                args += [position + start + offset, task.oid, bvid, task.encode()]
            added += int(
                await self.redis.eval(
                    SEED_LUA, 3 + len(ledgers), self.keys.videos, self.keys.tasks, self.keys.stats, *ledgers, *args
                )
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
        if batch.outcomes:
            script_keys = [keys.tasks, keys.delayed, keys.dead, keys.final, keys.stats]
            ledger_index: dict[int, int] = {}
            outcomes: list[bytes] = []
            for outcome in batch.outcomes:
                oid = outcome.task.oid
                if oid not in ledger_index:
                    script_keys.append(keys.video(oid))
                    ledger_index[oid] = len(script_keys)  # Lua is 1-based
                    script_keys.append(keys.rcounts(oid))  # at index + 1: the video's thread rcounts (refresh)
                outcomes += outcome.encode(ledger_index[oid])
            pipe.eval(
                SETTLE_LUA,
                len(script_keys),
                *script_keys,
                CONSUMER_GROUP,
                TASK_FIELD,
                repr(self.complete_ratio),
                *outcomes,
            )
        for name, value in batch.counters.items():
            pipe.hincrby(keys.stats, name, value)
        self._rate_step(pipe, batch)
        await pipe.execute()

    def _rate_step(self, pipe: Any, batch: SettleBatch) -> None:
        """The ring of recent seconds for pages/s and comments/s (display only: a batch
        applied twice after an ambiguous reply may count twice here, never in the counters)."""
        # The two sums, not all_counters(): a Counter built per batch for two numbers.
        pages, comments = batch.counters["pages_done"], batch.counters["comments"]
        for outcome in batch.outcomes:
            counters = outcome.counters
            pages += counters["pages_done"]
            comments += counters["comments"]
        if pages or comments:
            rates.bump(pipe, self.keys, int(time.time()), pages, comments)

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
