"""SharedCredential in one process: many coroutines asking at once cost one read and one fetch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

from scraper.targets.credentials import SharedCredential


class CountingRedis(FakeAsyncRedis):  # type: ignore[misc]  # fakeredis is untyped here
    """Counts the reads of the credential hash."""

    hgetalls = 0

    async def hgetall(self, *args: Any, **kwargs: Any) -> Any:
        self.hgetalls += 1
        return await super().hgetall(*args, **kwargs)


@pytest.fixture
async def client() -> AsyncIterator[CountingRedis]:
    redis = CountingRedis()
    yield redis
    await redis.aclose()


def credential(client: CountingRedis, fetched: list[int]) -> SharedCredential:
    async def fetch() -> dict[str, str]:
        fetched.append(1)
        await asyncio.sleep(0.01)  # a request to the site: the other coroutines pile up meanwhile
        return {"img_key": "a" * 32, "sub_key": "b" * 32}

    return SharedCredential(client, "cred", "cred:lock", "stats", fetch, name="wbi", max_age_s=3600)


async def test_a_crowd_of_first_requests_reads_and_fetches_once(client: CountingRedis) -> None:
    fetched: list[int] = []
    shared = credential(client, fetched)
    answers = await asyncio.gather(*(shared.get() for _ in range(64)))
    assert all(answer == ({"img_key": "a" * 32, "sub_key": "b" * 32}, 1) for answer in answers)
    assert len(fetched) == 1
    # one read by get() and one by renew() before it fetches: not one (or two) per coroutine
    assert client.hgetalls <= 2


async def test_a_current_copy_is_served_without_redis(client: CountingRedis) -> None:
    fetched: list[int] = []
    shared = credential(client, fetched)
    await shared.get()
    reads = client.hgetalls
    for _ in range(10):
        assert (await shared.get())[1] == 1
    assert client.hgetalls == reads
    # another process stored the keys: a fresh SharedCredential reads them and fetches nothing
    other = credential(client, fetched)
    assert (await asyncio.gather(*(other.get() for _ in range(16))))[0][1] == 1
    assert len(fetched) == 1
