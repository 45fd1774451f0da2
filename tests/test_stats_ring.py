"""The rate ring on a real redis-server: fixed size, exact windows, O(1) readers."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from scraper import queue as queue_module
from scraper import rates
from scraper import stats as stats_module
from scraper.keys import TargetKeys
from scraper.queue import SettleBatch, TaskQueue
from scraper.settle import Outcome
from scraper.stats import read_gauges, read_stats
from scraper.tasks import MAIN, Task
from tests.conftest import RedisServer

KEYS = TargetKeys("ring")
START_S = 1_700_000_000


@pytest.fixture
async def client(any_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=any_redis.port)
    await client.flushall()
    yield client
    await client.aclose()


async def _crawl_seconds(client: aioredis.Redis, first_s: int, seconds: int) -> None:
    """One settle-sized bump per simulated second: 3 pages, 60 comments."""
    for offset in range(0, seconds, 500):
        pipe = client.pipeline(transaction=True)
        for second in range(first_s + offset, first_s + min(offset + 500, seconds)):
            rates.bump(pipe, KEYS, second, 3, 60)
        await pipe.execute()


async def _ring_size(client: aioredis.Redis) -> tuple[int, int]:
    return int(await client.hlen(KEYS.rate)), int(await client.memory_usage(KEYS.rate) or 0)


async def test_ring_size_does_not_grow_with_the_crawls_length(client: aioredis.Redis) -> None:
    await _crawl_seconds(client, START_S, 100)
    fields_short, bytes_short = await _ring_size(client)
    await _crawl_seconds(client, START_S + 100, 20_000)  # five and a half more hours
    fields_long, bytes_long = await _ring_size(client)
    assert fields_short == fields_long == rates.RING_SLOTS
    assert bytes_long <= bytes_short + 64  # digit counts may differ a little, never the shape
    assert bytes_long < 2_000  # a compact listpack, not a hash table


async def test_windows_count_whole_seconds_and_reused_slots_restart(client: aioredis.Redis) -> None:
    now = START_S + 1_000
    await _crawl_seconds(client, START_S, 1_000)  # 3 pages/s for 1000 s, up to now - 1
    pipe = client.pipeline(transaction=True)
    rates.bump(pipe, KEYS, now, 500, 500)  # the current second is still filling: not counted
    rates.bump(pipe, KEYS, now - 1, 7, 0)  # two settles in one second add up
    rates.bump(pipe, KEYS, now - 1 - rates.RING_SLOTS, 1_000, 1_000)  # a late clock: older than its slot, dropped
    await pipe.execute()
    result = await rates.read_rates(client, KEYS, now)
    assert result == {
        "pages_per_s_10s": round((30 + 7) / 10, 2),
        "comments_per_s_10s": 60.0,
        "pages_per_s_60s": round((180 + 7) / 60, 2),
        "comments_per_s_60s": 60.0,
    }
    # A minute of silence later, every slot still held is outside the windows.
    assert set((await rates.read_rates(client, KEYS, now + 200)).values()) == {0.0}


async def test_settle_feeds_the_ring_and_stats_reads_a_fixed_amount(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = types.SimpleNamespace(now=float(START_S))
    fake_time = types.SimpleNamespace(time=lambda: clock.now)
    monkeypatch.setattr(queue_module, "time", fake_time)
    monkeypatch.setattr(stats_module, "time", fake_time)
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue([Task(kind=MAIN, oid=1, page=p) for p in range(1, 4)])
    entries = await queue.claim(3, block_ms=10)
    batch = SettleBatch()
    for entry_id, task in entries:  # each page done with 19 comments
        batch.add(Outcome(entry_id, task, records=19)).counters.update({"pages_done": 1, "comments": 19})
    await queue.settle(batch)
    assert rates.parse_ring(await client.hmget(KEYS.rate, rates.SLOT_FIELDS)) == {START_S: (3, 57)}

    async def bytes_read() -> dict[str, int]:
        """What one read sends back, measured by the server (INFO's own reply adds ~2 KB)."""
        sizes = {}
        for name, reader in (("stats", read_stats), ("gauges", read_gauges)):
            before = int((await client.info("stats"))["total_net_output_bytes"])
            await reader(client, KEYS)
            sizes[name] = int((await client.info("stats"))["total_net_output_bytes"]) - before
        return sizes

    short = await bytes_read()
    # Five hours of settles, and a legacy per-second hash an older version left behind.
    for second in range(START_S + 1, START_S + 18_000, 7):
        clock.now = float(second)
        batch = SettleBatch()
        batch.counters.update({"pages_done": 2, "comments": 40})
        await queue.settle(batch)
    await client.hset(KEYS.rate, mapping={f"pages_done:{START_S - s}": 3 for s in range(20_000)})
    long = await bytes_read()
    for name in short:
        assert short[name] < 6_000 and long[name] < 6_000, (short, long)  # the legacy fields alone are ~500 KB
    clock.now += 1
    gauges = await read_gauges(client, KEYS)
    assert (gauges["pages_done"], gauges["comments"], gauges["consumers"]) == (3 + 2 * 2572, 57 + 40 * 2572, 0)
    assert gauges["pages_per_s_60s"] == round(2 * 9 / 60, 2)  # one settle every 7 s: 9 in the last minute
