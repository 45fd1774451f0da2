"""What the workers rely on in the Redis client itself.

Shutdown cancels tasks that are in the middle of Redis commands; a client that
swallows the cancellation leaves a worker process running forever (redis-py
8.0 and 8.1 do; pyproject.toml keeps them out).
"""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis


async def test_cancelling_a_command_ends_the_task(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, max_connections=8)

    async def busy() -> None:
        while True:
            await client.eval("return 1", 0)

    rng = random.Random(7)
    try:
        for _ in range(100):
            task = asyncio.create_task(busy())
            await asyncio.sleep(rng.random() * 0.003)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, "the Redis client swallowed a cancellation: the task is still running"
            assert task.cancelled()
        assert await client.ping()  # and the pool still works afterwards
    finally:
        await client.aclose()
