"""The queue on a real redis-server, Redis 7 and the embedded 6.2 alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.ledger import dead_delta, read_videos, summarize
from scraper.queue import SettleBatch, TaskQueue, now_ms, read_counts
from scraper.settle import LedgerDelta, Outcome
from scraper.settle_lua import FINAL_RECORDS_PER_VIDEO
from scraper.tasks import CURSOR, MAIN, REPLY, Task
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


def _done(entry: tuple[bytes, Task], followups: list[Task] | None = None, records: int = 0, **ledger: Any) -> Outcome:
    entry_id, task = entry
    outcome = Outcome(entry_id, task, followups or [], records, ledger=LedgerDelta(**ledger))
    outcome.counters.update(pages_done=1, comments=records)
    return outcome


def _retry(entry: tuple[bytes, Task], due_ms: int) -> Outcome:
    entry_id, task = entry
    return Outcome(entry_id, task, retry_task=task.retried(), retry_due_ms=due_ms)


async def test_seed_is_once_per_video(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    seeds = [(Task(kind=CURSOR, oid=oid, page=1, bvid=f"BV{oid}"), f"BV{oid}") for oid in (7, 8, 9)]
    assert await queue.seed(seeds) == 3
    assert await queue.seed(seeds[1:] + [(Task(kind=CURSOR, oid=10, page=1), "BV10")]) == 1  # 8, 9 known
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight, counts.delayed, counts.dead) == (4, 0, 0, 0)
    assert int(await client.hget(KEYS.stats, "pages_known")) == 4
    assert [int(m) for m in await client.zrange(KEYS.videos, 0, -1)] == [7, 8, 9, 10]  # list order
    assert await client.hmget(KEYS.video(8), ["bvid", "status", "open"]) == [b"BV8", b"pending", b"1"]


async def test_lag_pending_and_drain_through_settle(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(10))
    claimed = await queue.claim(4, block_ms=10)
    assert [t.page for _, t in claimed] == [1, 2, 3, 4]
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight) == (6, 4)

    batch = SettleBatch()
    batch.add(_done(claimed[0], [Task(kind=REPLY, oid=7, root=99, page=1)], records=20))
    batch.add(_done(claimed[1], records=20))
    batch.add(_retry(claimed[2], now_ms() - 1))
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
        await queue.settle(SettleBatch([_done(e) for e in entries]))
    await queue.settle(SettleBatch([_done(claimed[3])]))
    assert await queue.is_drained()
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.in_flight, counts.delayed, counts.length) == (0, 0, 0, 0)


async def test_a_batch_settled_twice_applies_once(client: aioredis.Redis) -> None:
    """A settle retried after an ambiguous reply, or a page settled again after a takeover."""
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.seed([(Task(kind=CURSOR, oid=7, page=1), "BV7")])
    [entry] = await queue.claim(1, block_ms=10)
    follow = [Task(kind=CURSOR, oid=7, page=2, offset="x"), Task(kind=REPLY, oid=7, root=5, page=1)]
    batch = SettleBatch([_done(entry, follow, records=20, expected=45, threads=[(5, 25, 1)])])
    await queue.settle(batch)
    await queue.settle(batch)  # the same outcomes again: XACK answers 0, nothing applies
    taken_over = TaskQueue(client, KEYS, "c2")
    await taken_over.settle(SettleBatch([_done(entry, follow, records=20)]))
    counts = await read_counts(client, KEYS)
    assert (counts.queued, counts.length) == (2, 2)
    stats = await client.hgetall(KEYS.stats)
    assert (stats[b"pages_done"], stats[b"comments"], stats[b"pages_known"]) == (b"1", b"20", b"3")
    ledger = await client.hgetall(KEYS.video(7))
    assert (ledger[b"open"], ledger[b"fetched"], ledger[b"expected"], ledger[b"t:5:o"]) == (b"2", b"20", b"45", b"1")


async def test_ledger_complete_short_and_closed(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1", complete_ratio=1.0)
    await queue.ensure_group()
    await queue.seed([(Task(kind=CURSOR, oid=oid, page=1), f"BV{oid}") for oid in (1, 2, 3)])
    entries = {t.oid: (e, t) for e, t in await queue.claim(3, block_ms=10)}
    thread = [Task(kind=REPLY, oid=1, root=50, page=p) for p in (1, 2)]
    await queue.settle(
        SettleBatch(
            [
                _done(entries[1], thread, records=10, expected=40, threads=[(50, 30, 2)], short_code="short"),
                _done(entries[2], records=3, expected=1204, short_code="login"),
                Outcome(*entries[3], ledger=LedgerDelta(status="closed"), final={"kind": "closed"}),
            ]
        )
    )
    states = {s.oid: s for s in await read_videos(client, KEYS)}
    assert states[1].status == "pending"  # its thread is still open
    assert (states[2].status, states[2].reason) == ("incomplete", "login required: 3 of 1,204 comments visible")
    assert states[3].status == "closed"
    pages = await queue.claim(2, block_ms=10)
    await queue.settle(SettleBatch([_done(pages[0], records=20), _done(pages[1], records=10)]))
    ledger = await client.hgetall(KEYS.video(1))
    assert not [k for k in ledger if k.startswith(b"t:")]  # a finished thread leaves no fields
    assert (await read_videos(client, KEYS))[0].as_dict() == {
        "oid": 1,
        "bvid": "BV1",
        "status": "complete",
        "expected": 40,
        "fetched": 40,
        "reason": "",
        "refreshed_at": None,  # never refreshed (issue 11)
        "new": None,
    }


async def test_a_short_thread_or_a_dead_page_leaves_the_video_incomplete(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1", complete_ratio=0.98)
    await queue.ensure_group()
    await queue.seed([(Task(kind=CURSOR, oid=oid, page=1), f"BV{oid}") for oid in (1, 2)])
    entries = {t.oid: (e, t) for e, t in await queue.claim(2, block_ms=10)}
    thread = [Task(kind=REPLY, oid=1, root=50, page=p) for p in (1, 2)]
    chain = [Task(kind=CURSOR, oid=2, page=2, offset="o")]
    await queue.settle(
        SettleBatch(
            [
                _done(entries[1], thread, records=1, expected=31, threads=[(50, 30, 2)]),
                _done(entries[2], chain, records=20, expected=100),
            ]
        )
    )
    pages = {(t.oid, t.page): (e, t) for e, t in await queue.claim(3, block_ms=10)}
    dead = Outcome(*pages[(2, 2)], ledger=dead_delta(pages[(2, 2)][1], "timeout", 5), dead={"reason": "timeout"})
    await queue.settle(
        SettleBatch(
            [
                _done(pages[(1, 1)], records=20, thread_code="login_thread"),
                _done(pages[(1, 2)], thread_code="login_thread"),
                dead,
            ]
        )
    )
    states = {s.oid: s for s in await read_videos(client, KEYS)}
    assert states[1].status == "incomplete"
    assert states[1].reason == "login required: 21 of 31 comments visible (thread 50: 20 of 30 replies)"
    assert states[2].status == "incomplete"
    assert states[2].reason.startswith("a page failed for good: 20 of 100 comments (cursor:2:0:2 failed 5 times")
    assert summarize(list(states.values()))["incomplete"] == 2


async def test_one_page_threads_check_themselves_without_ledger_fields(client: aioredis.Redis) -> None:
    """A thread of one page carries its rcount in its task: short, complete or gone, its
    page alone decides, and the video's ledger never holds fields for it."""
    queue = TaskQueue(client, KEYS, "c1", complete_ratio=1.0)
    await queue.ensure_group()
    await queue.seed([(Task(kind=CURSOR, oid=oid, page=1), f"BV{oid}") for oid in (1, 2, 3)])
    entries = {t.oid: (e, t) for e, t in await queue.claim(3, block_ms=10)}
    threads = {oid: Task(kind=REPLY, oid=oid, root=50 + oid, page=1, expect=15) for oid in (1, 2, 3)}
    await queue.settle(
        SettleBatch(
            [
                _done(entries[oid], [threads[oid]], records=20, expected=35, threads=[(50 + oid, 15, 0)])
                for oid in (1, 2, 3)
            ]
        )
    )
    for oid in (1, 2, 3):
        ledger = await client.hgetall(KEYS.video(oid))
        assert not [k for k in ledger if k.startswith(b"t:")]  # nothing opened for the thread
        assert ledger[b"open"] == b"1"  # its page is open all the same
        assert len(await client.get(KEYS.rcounts(oid)) or b"") == 12  # its rcount, for a refresh
    pages = {t.oid: (e, t) for e, t in await queue.claim(3, block_ms=10)}
    assert {t.expect for _, t in pages.values()} == {15}  # the rcount crossed the stream
    await queue.settle(
        SettleBatch(
            [
                _done(pages[1], records=15, thread_code="thread_short"),
                _done(pages[2], records=9, thread_code="thread_short"),
                _done(pages[3], records=4, thread_code="thread_short", thread_gone=True),
            ]
        )
    )
    states = {s.oid: s for s in await read_videos(client, KEYS)}
    assert (states[1].status, states[1].expected, states[1].fetched) == ("complete", 35, 35)
    assert (states[2].status, states[2].fetched) == ("incomplete", 29)
    assert states[2].reason == "29 of 35 comments fetched (thread 52: 9 of 15 replies)"
    # The root went away: the 11 replies never fetched are no longer expected.
    assert (states[3].status, states[3].expected, states[3].fetched) == ("complete", 24, 24)


async def test_retry_carries_attempts_and_waits_for_its_due_time(client: aioredis.Redis) -> None:
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.enqueue(_pages(1))
    [(entry_id, task)] = await queue.claim(1, block_ms=10)
    await queue.settle(SettleBatch([_retry((entry_id, task), now_ms() + 60_000)]))
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
    batch = SettleBatch()
    for entry_id, task in entries:
        batch.release(entry_id, task)
    await queue.settle(batch)
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
    await gone.settle(SettleBatch([_done(entries[0][0])]))  # gone's pending is now empty
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


async def test_final_records_are_bounded_per_video_and_counted_exactly(client: aioredis.Redis) -> None:
    """Issue 13: a video whose threads are all gone (12022 on each) keeps a few records, not one per page."""
    queue = TaskQueue(client, KEYS, "c1")
    await queue.ensure_group()
    await queue.seed([(Task(kind=CURSOR, oid=7, page=1), "BV7")])
    [entry] = await queue.claim(1, block_ms=10)
    threads = [Task(kind=REPLY, oid=7, root=100 + n, page=1) for n in range(FINAL_RECORDS_PER_VIDEO + 5)]
    await queue.settle(SettleBatch([_done(entry, threads, records=1)]))
    gone = []
    for entry_id, task in await queue.claim(len(threads), block_ms=10):
        outcome = Outcome(entry_id, task, final={"kind": "deleted", "fingerprint": task.fingerprint})
        outcome.counters.update({"final:deleted": 1, "pages_final": 1})
        gone.append(outcome)
    await queue.settle(SettleBatch(gone))
    stats = await client.hgetall(KEYS.stats)
    assert int(stats[b"final:deleted"]) == len(threads)  # the count stays exact
    assert await client.xlen(KEYS.final) == FINAL_RECORDS_PER_VIDEO
    assert int(stats[b"final_records_dropped"]) == 5
