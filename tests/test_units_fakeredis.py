"""Fast unit tests on fakeredis (the real-server behaviour is covered elsewhere)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from fakeredis import FakeAsyncRedis

from scraper import deadletters
from scraper.keys import TASK_FIELD, TargetKeys
from scraper.rates import parse_ring, window_rates
from scraper.tasks import MAIN, Task
from workers.heartbeat import Heartbeat, fresh_heartbeats

KEYS = TargetKeys("unit")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAsyncRedis]:
    client = FakeAsyncRedis()
    yield client
    await client.aclose()


def test_rates_use_whole_seconds_before_now() -> None:
    now = 1_000
    slots = [f"{now - s}:10:0".encode() for s in range(1, 11)]  # 10 pages/s over the last 10 s
    slots.append(f"{now}:999:999".encode())  # the current second is still filling: ignored
    slots += [f"{now - 30}:0:600".encode(), f"{now - 61}:5000:5000".encode(), None, b"junk"]
    result = window_rates(parse_ring(slots), now)
    assert result["pages_per_s_10s"] == 10.0
    assert result["pages_per_s_60s"] == round(100 / 60, 2)
    assert result["comments_per_s_10s"] == 0.0
    assert result["comments_per_s_60s"] == 10.0


async def test_dead_letters_list_requeue_purge(fake: FakeAsyncRedis) -> None:
    task = Task(kind=MAIN, oid=7, page=3, attempt=4)
    first = await fake.xadd(KEYS.dead, {"task": task.encode(), "fingerprint": task.fingerprint, "reason": "timeout",
                                        "error": "request timed out", "attempts": "5"})  # fmt: skip
    await fake.xadd(KEYS.dead, {"task": task.encode(), "fingerprint": "x", "reason": "http_5xx", "error": "HTTP 503",
                                "attempts": "5"})  # fmt: skip
    letters = await deadletters.list_dead(fake, KEYS)
    assert [(d["reason"], d["attempts"]) for d in letters] == [("timeout", "5"), ("http_5xx", "5")]
    assert "2 dead letters" in deadletters.render(letters)
    assert deadletters.render([]) == "no dead letters"

    assert await deadletters.requeue(fake, KEYS, [first.decode()]) == 1
    [(_, fields)] = await fake.xrange(KEYS.tasks)
    assert Task.decode(fields[TASK_FIELD.encode()]) == Task(kind=MAIN, oid=7, page=3, attempt=0)  # attempts reset
    assert await fake.xlen(KEYS.dead) == 1
    assert await deadletters.purge(fake, KEYS) == 1
    assert await fake.xlen(KEYS.dead) == 0


async def test_heartbeat_writes_redis_and_file(fake: FakeAsyncRedis, tmp_path: Path) -> None:
    beat = Heartbeat(fake, KEYS, "pod-1-0", tmp_path / "beats", interval_s=1)
    await beat.beat({"in_flight": 3, "pages_done": 9})
    record = orjson.loads(await fake.hget(KEYS.consumers, "pod-1-0"))
    assert record["in_flight"] == 3 and record["pages_done"] == 9 and abs(record["ts"] - time.time()) < 5
    assert [p.name for p in fresh_heartbeats(tmp_path / "beats", max_age_s=30)] == ["pod-1-0.beat"]
    await beat.remove()
    assert await fake.hget(KEYS.consumers, "pod-1-0") is None
    assert fresh_heartbeats(tmp_path / "beats", max_age_s=30) == []
