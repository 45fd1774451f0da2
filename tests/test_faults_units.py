"""The pieces of the fault handling on their own: leases on both Redis versions, the policy table."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, OutOfMemoryError, ReadOnlyError, ResponseError

from scraper.keys import TargetKeys
from scraper.queue import TaskQueue
from scraper.tasks import MAIN, Task
from tests.conftest import RedisServer
from workers.leases import Leases
from workers.redis_policy import ErrorLog, Fault, RedisBug, RedisGuard, TargetReset, classify

KEYS = TargetKeys("units")


@pytest.fixture
async def client(any_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis_client = aioredis.Redis.from_url(any_redis.url)
    await redis_client.flushall()
    yield redis_client
    await redis_client.aclose()


async def _queue(client: aioredis.Redis, pages: int) -> None:
    await TaskQueue(client, KEYS).ensure_group()
    await TaskQueue(client, KEYS).enqueue([Task(kind=MAIN, oid=oid, page=1) for oid in range(pages)])


async def test_refresh_keeps_held_entries_ours_and_finds_orphans(client: aioredis.Redis) -> None:
    await _queue(client, 6)
    mine = [entry_id for entry_id, _ in await TaskQueue(client, KEYS, "me").claim(4, 10)]
    theirs = [entry_id for entry_id, _ in await TaskQueue(client, KEYS, "other").claim(2, 10)]
    leases = Leases(client, KEYS, "me", dead_after_s=10)
    # Held: the first two of ours and one of theirs. The other two of ours are orphans.
    result = await leases.refresh([*mine[:2], theirs[0]], orphan_idle_ms=0, orphan_limit=10)
    assert result.lost == [theirs[0]]
    assert sorted(entry_id for entry_id, _ in result.orphans) == sorted(mine[2:])
    assert {task.oid for _, task in result.orphans} == {2, 3}
    # Refreshing resets the idle time without a new delivery.
    pending = await client.xpending_range(KEYS.tasks, "workers", min="-", max="+", count=10, consumername="me")
    assert all(item["time_since_delivered"] < 1000 for item in pending)
    assert {item["message_id"]: item["times_delivered"] for item in pending}[mine[0]] == 1


async def test_only_consumers_with_a_dead_heartbeat_are_taken_over(client: aioredis.Redis) -> None:
    await _queue(client, 6)
    for name in ("alive", "stale", "marked"):
        await TaskQueue(client, KEYS, name).claim(2, 10)
    now = time.time()
    await client.hset(KEYS.consumers, mapping={
        "alive": orjson.dumps({"ts": now}),
        "stale": orjson.dumps({"ts": now - 60}),
        "marked": orjson.dumps({"ts": now, "dead": True}),
    })  # fmt: skip
    leases = Leases(client, KEYS, "me", dead_after_s=10)
    assert sorted(await leases.dead_consumers()) == ["marked", "stale"]
    await client.hset(KEYS.consumers, "me", orjson.dumps({"ts": now}))
    time.sleep(1.1)  # of two takers at once, only the first gets an entry: it must be idle for 1 s
    taken = await leases.take_over(10)
    assert sorted(taken.dead) == ["marked", "stale"] and len(taken.entries) == 4
    assert all(deliveries == 2 for _, deliveries in taken.entries)
    # A second taker a moment later finds nothing: the first one reset the idle time.
    assert (await Leases(client, KEYS, "late", dead_after_s=10).take_over(10)).entries == []


def test_policy_table() -> None:
    assert classify(RedisConnectionError("reset")) is Fault.OUTAGE
    assert classify(ResponseError("LOADING Redis is loading the dataset in memory")) is Fault.OUTAGE
    assert classify(OutOfMemoryError("command not allowed when used memory > 'maxmemory'")) is Fault.WRITES_REFUSED
    assert classify(ReadOnlyError("You can't write against a read only replica.")) is Fault.WRITES_REFUSED
    assert classify(ResponseError("UNBLOCKED force unblock from blocking operation")) is Fault.WRITES_REFUSED
    pipeline = "Command # 3 (XACK t workers 1-0) of pipeline caused error: NOGROUP No such key 't' or consumer group"
    assert classify(ResponseError(pipeline)) is Fault.TARGET_RESET
    assert classify(NoPermissionError("this user has no permissions to run the 'hincrby' command")) is Fault.BUG
    assert classify(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")) is Fault.BUG
    assert classify(ValueError("not redis")) is None


async def test_guard_waits_out_refusals_and_raises_the_rest() -> None:
    guard = RedisGuard("unit", ErrorLog(interval_s=60))
    answers: list[Exception | None] = [OutOfMemoryError("OOM"), OutOfMemoryError("OOM"), None]
    gate: list[bool] = []  # was fetching allowed when each attempt was made?

    async def settle() -> str:
        gate.append(guard.writable.is_set())
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "ok"

    assert await guard.call(settle, writes=True) == "ok"
    assert gate == [True, False, False]  # closed from the first refusal until a write went through
    assert guard.writable.is_set() and guard.waiting_for == ""

    async def reset() -> None:
        raise ResponseError("NOGROUP No such key")

    async def bug() -> None:
        raise ResponseError("ERR unknown command 'XFOO'")

    with pytest.raises(TargetReset):
        await guard.call(reset)
    with pytest.raises(RedisBug, match="unknown command"):
        await guard.call(bug)


def test_error_log_is_one_line_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorLog(interval_s=0.2)
    with caplog.at_level(logging.WARNING):
        for _ in range(1000):
            errors.error("refused", "Redis refuses writes")
        time.sleep(0.25)
        errors.error("refused", "Redis refuses writes")
    assert [r.getMessage() for r in caplog.records] == [
        "Redis refuses writes",
        "Redis refuses writes (1000 times in the last 0.2s)",
    ]
