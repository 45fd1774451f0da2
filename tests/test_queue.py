"""The queue on a real redis-server, Redis 7 and the embedded 6.2 alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.queue import SettleBatch, TaskQueue, now_ms, read_counts
from scraper.tasks import MAIN, REPLY, Task
from tests.conftest import RedisServer

KEYS = TargetKeys("qtest")


@pytest.fixture
async def client(any_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=any_redis.port)
    await client.flushall()
    yield client
    await client.aclose()


def _pages(n: int, oid: int = 7) -> list[Task]:
    return [Task(kind=MAIN, oid=oid, page=p) for p in range(1, n + 1)]


async def test_enqueue_is_deduplicated(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    assert await queue.enqueue(_pages(5)) == 5
    assert await queue.enqueue(_pages(7)) == 2  # pages 1..5 already known
    assert await queue.enqueue([Task(kind=MAIN, oid=7, page=3, attempt=2)]) == 0  # attempts do not matter
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight, counts.delayed, counts.dead) == (7, 0, 0, 0)
    assert int(await client.hget(KEYS.stats, "pages_known")) == 7


async def test_lag_pending_and_drain_through_settle(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(10))
    claimed = await queue.claim(4, block_ms=10)
    assert [t.page for _, t in claimed] == [1, 2, 3, 4]
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight) == (6, 4)

    batch = SettleBatch()
    batch.acks = [claimed[0][0], claimed[1][0]]
    batch.followups = [Task(kind=REPLY, oid=7, root=99, page=1), Task(kind=MAIN, oid=7, page=2)]  # second is a repeat
    batch.retries = [(claimed[2][1].retried(), now_ms() - 1)]
    batch.acks.append(claimed[2][0])
    batch.counters.update({"pages_done": 2, "comments": 40})
    await queue.settle(batch)

    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight, counts.delayed) == (7, 1, 1)  # 6 + 1 new follow-up
    assert await queue.promote_due() == 1
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.delayed) == (8, 0)
    stats = await client.hgetall(KEYS.stats)
    assert stats[b"pages_done"] == b"2" and stats[b"comments"] == b"40"
    assert not await queue.is_drained()

    # Settle everything: the stream empties, so the crawl is over.
    while True:
        entries = await queue.claim(50, block_ms=10)
        if not entries:
            break
        await queue.settle(SettleBatch(acks=[e for e, _ in entries]))
    await queue.settle(SettleBatch(acks=[claimed[3][0]]))
    assert await queue.is_drained()
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight, counts.delayed, counts.length) == (0, 0, 0, 0)


async def test_retry_carries_attempts_and_waits_for_its_due_time(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(1))
    [(entry_id, task)] = await queue.claim(1, block_ms=10)
    await queue.settle(SettleBatch(acks=[entry_id], retries=[(task.retried(), now_ms() + 60_000)]))
    assert await queue.promote_due() == 0  # not due yet
    assert not await queue.is_drained()  # a delayed retry keeps the crawl open
    await client.zadd(KEYS.delayed, {task.retried().encode(): 0})  # make it due
    assert await queue.promote_due() == 1
    [(_, again)] = await queue.claim(1, block_ms=10)
    assert (again.page, again.attempt) == (1, 1)


async def test_stale_entries_are_taken_over_with_their_delivery_count(client: aioredis.Redis) -> None:
    dead_worker = TaskQueue(client, KEYS, "dead-1")
    live_worker = TaskQueue(client, KEYS, "live-1")
    await dead_worker.ensure_group()
    await dead_worker.enqueue(_pages(3))
    held = await dead_worker.claim(3, block_ms=10)
    assert len(held) == 3
    assert await live_worker.reclaim_stale(min_idle_ms=60_000, count=10) == []  # not idle long enough
    taken = await live_worker.reclaim_stale(min_idle_ms=0, count=10)
    assert sorted(t.page for (_, t), _ in taken) == [1, 2, 3]
    assert {deliveries for _, deliveries in taken} == {2}
    pending = await client.xpending_range(KEYS.tasks, "workers", "-", "+", 10)
    assert {p["consumer"] for p in pending} == {b"live-1"}


async def test_release_hands_pages_back_at_once(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(2))
    entries = await queue.claim(2, block_ms=10)
    await queue.settle(SettleBatch(acks=[e for e, _ in entries], releases=[t for _, t in entries]))
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight) == (2, 0)
    other = TaskQueue(client, KEYS, "c2")
    assert sorted(t.page for _, t in await other.claim(5, block_ms=10)) == [1, 2]


async def test_dead_consumers_are_pruned_but_not_their_pending_work(client: aioredis.Redis) -> None:
    import time

    import orjson

    from workers.heartbeat import prune_consumers

    live, gone, holder = (TaskQueue(client, KEYS, name) for name in ("live", "gone", "holder"))
    await live.ensure_group()
    await live.enqueue(_pages(2))
    await gone.claim(1, block_ms=10)
    entries = await gone.reclaim_stale(0, 10)  # its one entry, claimed back by itself
    assert len(entries) == 1
    await gone.settle(SettleBatch(acks=[entries[0][0][0]]))  # gone's pending is now empty
    await holder.claim(1, block_ms=10)  # holder keeps one pending
    await client.hset(
        KEYS.consumers,
        mapping={
            "gone": orjson.dumps({"ts": time.time() - 3600}),
            "live": orjson.dumps({"ts": time.time()}),
        },
    )
    # idle_limit_ms=0: any idle time qualifies, even a settle in the same millisecond
    removed = await prune_consumers(client, KEYS, keep="live", idle_limit_ms=0, heartbeat_max_age_s=60)
    assert sorted(removed) == ["gone", "gone"]  # group member and heartbeat
    names = {c["name"] for c in await client.xinfo_consumers(KEYS.tasks, "workers")}
    assert names == {b"holder"}  # pending work keeps its consumer until taken over
    assert set(await client.hkeys(KEYS.consumers)) == {b"live"}
