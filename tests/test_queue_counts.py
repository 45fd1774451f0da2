"""The backlog reading on real redis-servers, including Redis 7.0's NULL lag.

KEDA, the exporter and `scraper stats` all act on the backlog; a reading of
0 while work waits would scale the workers down with work left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from scraper.keys import CONSUMER_GROUP, TargetKeys
from scraper.queue import SettleBatch, TaskQueue
from scraper.queue_counts import read_counts
from scraper.settle import Outcome
from scraper.tasks import MAIN, Task
from tests.conftest import RedisServer

KEYS = TargetKeys("lagtest")


def _pages(n: int) -> list[Task]:
    return [Task(kind=MAIN, oid=11, page=p) for p in range(1, n + 1)]


@pytest.fixture
async def redis7(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=redis_server.port)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def client(any_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=any_redis.port)
    await client.flushall()
    yield client
    await client.aclose()


async def _group_lag(client: aioredis.Redis) -> object:
    (group,) = [
        g for g in await client.xinfo_groups(KEYS.tasks) if g["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode())
    ]
    return group["lag"]


async def test_settling_the_last_delivered_entry_makes_redis_lag_null_but_not_ours(redis7: aioredis.Redis) -> None:
    queue = TaskQueue(redis7, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(10))
    claimed = await queue.claim(4, block_ms=10)
    assert await _group_lag(redis7) == 6  # Redis knows the lag while nothing was deleted

    # The newest claimed page finishes first: its settle acknowledges and
    # deletes the group's last-delivered entry while pages 1-3 are pending.
    await queue.settle(SettleBatch([Outcome(*claimed[-1])]))

    counts = await read_counts(redis7, KEYS)
    assert (counts.queued, counts.in_flight, counts.length) == (6, 3, 9)
    info = await redis7.info("server")
    if str(info["redis_version"]).startswith("7.0."):  # Debian's redis-server here
        assert await _group_lag(redis7) is None  # what KEDA's lag trigger reads as 0
        assert not counts.lag_reported


async def test_drain_hand_back_keeps_the_backlog_right(redis7: aioredis.Redis) -> None:
    # A draining worker hands its unstarted pages back: re-added at the end,
    # the originals acknowledged and deleted (the last-delivered one among them).
    queue = TaskQueue(redis7, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(8))
    claimed = await queue.claim(5, block_ms=10)
    handed_back = claimed[2:]
    batch = SettleBatch()
    for entry_id, task in handed_back:
        batch.release(entry_id, task)
    await queue.settle(batch)

    counts = await read_counts(redis7, KEYS)
    # pages 6-8 never delivered + 3 handed back = 6 waiting; pages 1-2 in flight.
    assert (counts.queued, counts.in_flight, counts.length) == (6, 2, 8)


async def test_counts_on_both_servers_before_and_after_work(client: aioredis.Redis) -> None:
    empty = await read_counts(client, KEYS)  # no stream, no group yet: not an error
    assert (empty.queued, empty.in_flight, empty.delayed, empty.dead, empty.length) == (0, 0, 0, 0, 0)

    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(6))
    claimed = await queue.claim(3, block_ms=10)
    (_, _), (retried_id, retried_task), done = claimed
    retry = Outcome(retried_id, retried_task, retry_task=retried_task.retried(), retry_due_ms=2**62)
    await queue.settle(SettleBatch([Outcome(*done), retry]))
    await queue.settle(SettleBatch([Outcome(retried_id, retried_task)]))  # settled already: changes nothing
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight, counts.delayed, counts.length) == (3, 1, 1, 4)
