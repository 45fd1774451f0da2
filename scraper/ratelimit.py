"""The cluster-wide, adaptive rate limiter for one host.

Every process of every pod shares one budget of R requests/s per host. The
state lives in one Redis hash per host (``keys.ratelimit_key``) and is changed
only by Lua scripts, which run atomically and read the clock with
``redis.call('TIME')``: the pods' clocks never matter, only the server's.

Pacing: GCRA with batched, time-stamped grants
----------------------------------------------
GCRA keeps one number, the theoretical arrival time ``tat``. With the emission
interval ``T = 1/rate`` and the tolerance ``tau = (burst - 1) * T``, a request
conforms at time ``t`` when ``tat - tau <= t``; granting it moves ``tat`` on by
``T``. Over any window of ``w`` seconds at most ``rate * w + burst`` requests
conform, which is the property the server cares about.

A round trip per request would put Redis on the hot path, so a process asks for
up to ``k`` tokens at once (``k`` covers ``batch_window_s`` of the current rate,
never more than the coroutines waiting, at least 1). The script hands out the
next ``n <= k`` slots of the schedule whose send times fall within a short
horizon (``2 * batch_window_s``) and returns where the first one lies and the
spacing ``T``. Token ``i`` may be used at ``max(now, first + i * T)``, never
earlier: a batch is spent at the pace it was granted, not all at once. If every
process spent its batch the moment it arrived, four processes holding a tenth
of a second each would bunch into bursts the schedule never allowed. Because
send times are mapped onto the local clock *after* the reply arrives, local
sends can only be late, never early. A token nobody used within
``STALE_TOKEN_S`` of its slot is dropped rather than sent late, since late
tokens add up across processes at a window's edge. A process asks again only
when the slots it holds are about to run out (so the coroutines that came back
meanwhile make the next batch full), and when no slot falls within the horizon
the script grants nothing and the process sleeps until a whole batch would fit:
about one round trip per batch window per process, whatever R is.

Backing off: AIMD with a shared cooldown
----------------------------------------
``on_throttle`` (HTTP 412/429, API -412/-352/-799) sets a cooldown for the
host: the Retry-After when the site gave one (capped at
``MAX_RETRY_AFTER_S``), else ``min(ban_cooldown_s, first_cooldown_s * 2^n)``
where ``n`` counts bans that follow one another within ``ban_cooldown_s`` of
the previous cooldown's end. The first ban costs a couple of seconds; a site
that keeps banning gets the full cooldown. The rate is halved (never below
``min_rate``), and the schedule restarts at the cooldown's end without a burst.
While the cooldown lasts the acquire script grants nothing and returns the time
left. A throttle reported during a cooldown is a reply to a request sent
before it began: it does not count as a new ban and does not halve the rate
again (it may lengthen the cooldown to a longer Retry-After). After the
cooldown the acquire script raises the rate by ``R / recover_s`` per second
since the cooldown ended, back up to R. This costs no extra round trip, and
every process of every pod reads the same rate.

Concurrency: leases
-------------------
With ``inflight_cap > 0`` a request also holds a lease in a sorted set
(``keys.inflight_key``) scored by its expiry (server time + ``lease_ttl_s``).
Expired leases are removed before counting, so a process that crashed while
holding leases blocks nobody for longer than the TTL. Inside a process only
one coroutine polls Redis for a lease; a local release wakes it at once.

A rate of 0 means unlimited: ``build_limiter`` then returns a ``NullLimiter``
that never talks to Redis (unless an in-flight cap is set).

Usage::

    limiter = build_limiter(redis, "api.bilibili.com", RateLimitConfig(rate=5.0))
    async with limiter.slot():          # in-flight lease (no-op without a cap)
        await limiter.acquire()         # rate token
        ...send the request...
    limiter.on_success()  # or: await limiter.on_throttle(retry_after_s)

Redis errors (``redis.exceptions.ConnectionError`` while Redis is unreachable)
propagate from ``acquire``, ``on_throttle`` and ``acquire_slot``: the caller
decides how to ride out an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from scraper.keys import DEFAULT_PREFIX, inflight_key, ratelimit_key

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from scraper.settings import Settings

log = logging.getLogger(__name__)

STATE_TTL_MS = 3_600_000  # limiter state of a host nobody asked about for an hour is dropped
MAX_RETRY_AFTER_S = 3600.0  # a longer Retry-After is re-probed hourly: one request per probe
STALE_TOKEN_S = 0.05  # a token unused this long after its slot is dropped, not sent late
SLOT_POLL_MIN_S = 0.005  # first re-poll of a full in-flight cap ...
SLOT_POLL_MAX_S = 0.1  # ... doubling up to this
MIN_WAIT_S = 0.001  # never spin on Redis faster than this

# Numbers cross the Lua boundary as strings: Redis truncates Lua numbers in
# replies to integers, and tostring() keeps only 14 digits (a microsecond
# timestamp has 16).
_LUA_COMMON = """
if redis.replicate_commands then redis.replicate_commands() end
local function fmt(x) return string.format('%.3f', x) end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS[1] state hash. ARGV: rate, burst, min_rate, increase per s, k, horizon (us), ttl (ms).
# Returns {n, first send offset (us, may be < 0), interval (us), rate, cooldown left (us)}.
_ACQUIRE_LUA = (
    _LUA_COMMON
    + """
local key = KEYS[1]
local cfg = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local min_rate = tonumber(ARGV[3])
local inc = tonumber(ARGV[4])
local k = tonumber(ARGV[5])
local horizon = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local now = clock()
local s = redis.call('HMGET', key, 'tat', 'rate', 'rate_at', 'cool_until')
local tat = tonumber(s[1]) or now
local rate = tonumber(s[2]) or cfg
local rate_at = tonumber(s[3]) or now
local cool = tonumber(s[4]) or 0
if rate > cfg then rate = cfg end
if rate < min_rate then rate = min_rate end
if now < cool then
  redis.call('HSET', key, 'cfg', ARGV[1], 'inc', ARGV[4])
  redis.call('PEXPIRE', key, ttl + math.ceil((cool - now) / 1000))
  return {0, '0', '0', fmt(rate), fmt(cool - now)}
end
local since = math.max(rate_at, cool)
if rate < cfg and now > since then
  rate = math.min(cfg, rate + inc * (now - since) / 1000000)
end
local interval = 1000000 / rate
local tau = (burst - 1) * interval
if tat < now then tat = now end
local first = tat - tau - now
local n = 0
if first <= horizon then
  n = math.min(k, math.floor((horizon - first) / interval) + 1)
  tat = tat + n * interval
end
redis.call('HSET', key, 'tat', fmt(tat), 'rate', fmt(rate), 'rate_at', fmt(now),
  'cfg', ARGV[1], 'inc', ARGV[4])
redis.call('PEXPIRE', key, ttl)
return {n, fmt(first), fmt(interval), fmt(rate), '0'}
"""
)

# KEYS[1] state hash. ARGV: rate, burst, min_rate, increase per s, first cooldown (us),
# max cooldown (us), retry-after (us, < 0: none), ttl (ms).
# Returns {1 if a new ban else 0, cooldown left (us), rate, bans}.
_THROTTLE_LUA = (
    _LUA_COMMON
    + """
local key = KEYS[1]
local cfg = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local min_rate = tonumber(ARGV[3])
local inc = tonumber(ARGV[4])
local first_cool = tonumber(ARGV[5])
local max_cool = tonumber(ARGV[6])
local retry_after = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local now = clock()
local s = redis.call('HMGET', key, 'tat', 'rate', 'rate_at', 'cool_until', 'streak', 'bans')
local tat = tonumber(s[1]) or now
local rate = tonumber(s[2]) or cfg
local rate_at = tonumber(s[3]) or now
local cool = tonumber(s[4]) or 0
local streak = tonumber(s[5]) or 0
local bans = tonumber(s[6]) or 0
if rate > cfg then rate = cfg end
local fresh = 0
if now < cool then
  if retry_after >= 0 and now + retry_after > cool then cool = now + retry_after end
else
  local since = math.max(rate_at, cool)
  if rate < cfg and now > since then
    rate = math.min(cfg, rate + inc * (now - since) / 1000000)
  end
  if now - cool > max_cool then streak = 0 end
  local duration
  if retry_after >= 0 then
    duration = retry_after
  else
    duration = math.min(max_cool, first_cool * 2 ^ math.min(streak, 40))
  end
  streak = streak + 1
  bans = bans + 1
  fresh = 1
  rate = math.max(min_rate, rate * 0.5)
  cool = now + duration
end
local start = cool + (burst - 1) * 1000000 / rate
if tat < start then tat = start end
redis.call('HSET', key, 'tat', fmt(tat), 'rate', fmt(rate), 'rate_at', fmt(cool),
  'cool_until', fmt(cool), 'streak', streak, 'bans', bans, 'cfg', ARGV[1], 'inc', ARGV[4])
redis.call('PEXPIRE', key, ttl + math.ceil((cool - now) / 1000))
return {fresh, fmt(cool - now), fmt(rate), bans}
"""
)

# KEYS[1] lease set. ARGV: cap, lease ttl (us), lease id.
# Returns {1, '0'} when leased, else {0, time until the oldest lease expires (us)}.
_SLOT_LUA = (
    _LUA_COMMON
    + """
local key = KEYS[1]
local cap = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local now = clock()
redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
if redis.call('ZCARD', key) < cap then
  redis.call('ZADD', key, fmt(now + ttl), ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(ttl / 1000) + 1000)
  return {1, '0'}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, fmt(tonumber(oldest[2]) - now)}
"""
)

# KEYS[1] state hash, KEYS[2] lease set. Read-only.
# Returns {configured rate, effective rate, cooldown left (us), bans, leases live}.
_READ_LUA = """
local function fmt(x) return string.format('%.3f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', KEYS[1], 'cfg', 'rate', 'rate_at', 'cool_until', 'bans', 'inc')
local cfg = tonumber(s[1]) or 0
local rate = tonumber(s[2]) or cfg
local rate_at = tonumber(s[3]) or now
local cool = tonumber(s[4]) or 0
local bans = tonumber(s[5]) or 0
local inc = tonumber(s[6]) or 0
local left = 0
if now < cool then
  left = cool - now
else
  local since = math.max(rate_at, cool)
  if rate < cfg and now > since then rate = math.min(cfg, rate + inc * (now - since) / 1000000) end
end
local live = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')
return {fmt(cfg), fmt(rate), fmt(left), bans, live}
"""


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """How hard one host may be hit, by all pods together.

    ``rate`` is requests/s (0: unlimited); ``burst`` requests may go at once
    after a quiet spell. ``recover_s`` is how long AIMD takes to climb from 0
    back to ``rate`` (so +rate/recover_s per second without a ban).
    ``lease_ttl_s`` must outlast the slowest request.
    """

    rate: float
    burst: int = 5
    min_rate: float = 0.5
    ban_cooldown_s: float = 60.0
    inflight_cap: int = 0
    first_cooldown_s: float = 2.0
    recover_s: float = 20.0
    batch_window_s: float = 0.05
    lease_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        checks = (
            (self.rate >= 0, "rate must be >= 0"),
            (self.burst >= 1, "burst must be >= 1"),
            (self.min_rate > 0, "min_rate must be > 0"),
            (self.ban_cooldown_s >= 0, "ban_cooldown_s must be >= 0"),
            (self.inflight_cap >= 0, "inflight_cap must be >= 0"),
            (self.first_cooldown_s >= 0, "first_cooldown_s must be >= 0"),
            (self.recover_s > 0, "recover_s must be > 0"),
            (self.batch_window_s > 0, "batch_window_s must be > 0"),
            (self.lease_ttl_s > 0, "lease_ttl_s must be > 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}, got {self!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitConfig:
        """The limiter's share of the settings tree (lease TTL outlasts the HTTP timeout)."""
        target = settings.target
        return cls(
            rate=target.rate_limit,
            burst=target.rate_burst,
            min_rate=target.min_rate,
            ban_cooldown_s=target.ban_cooldown_s,
            inflight_cap=settings.worker.inflight_per_host,
            lease_ttl_s=max(60.0, 3 * settings.http.timeout_s),
        )

    @property
    def floor_rate(self) -> float:
        """The lowest rate AIMD may cut to (never above the configured rate)."""
        return min(self.min_rate, self.rate) if self.rate > 0 else self.min_rate


class Limiter(Protocol):
    """What a fetch loop needs of a limiter; both implementations below provide it."""

    async def acquire(self) -> None: ...
    async def on_throttle(self, retry_after_s: float | None = None) -> None: ...
    def on_success(self) -> None: ...
    def slot(self) -> AbstractAsyncContextManager[None]: ...
    async def close(self) -> None: ...


class NullLimiter:
    """No limit at all: every method returns at once and nothing touches Redis."""

    effective_rate = 0.0
    successes = 0

    async def acquire(self) -> None:
        return None

    async def on_throttle(self, retry_after_s: float | None = None) -> None:
        return None

    def on_success(self) -> None:
        return None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        yield

    async def acquire_slot(self) -> str:
        return ""

    async def release_slot(self, lease: str) -> None:
        return None

    async def close(self) -> None:
        return None


class HostRateLimiter:
    """One process's handle on the shared limit of one host (see the module docstring).

    Many coroutines may call ``acquire`` at once: one background refill talks to
    Redis, the others wait for the tokens it brings back.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        host: str,
        config: RateLimitConfig,
        *,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.host = host
        self.config = config
        self._redis = redis
        self._key = ratelimit_key(host, prefix)
        self._inflight_key = inflight_key(host, prefix)
        self._acquire_script = redis.register_script(_ACQUIRE_LUA)
        self._throttle_script = redis.register_script(_THROTTLE_LUA)
        self._slot_script = redis.register_script(_SLOT_LUA)
        self.effective_rate = config.rate  # as last seen in Redis; for metrics
        self.successes = 0
        # Rate tokens: local monotonic send times, oldest first.
        self._tokens: deque[float] = deque()
        self._waiting = 0
        self._refill_task: asyncio.Task[None] | None = None
        self._generation = 0  # bumped on a throttle: popped tokens become void
        self._cooldown_until = 0.0  # local monotonic time, as last learned
        self._reserved_until = 0.0  # send time of the last token granted to this process
        # In-flight leases.
        self._leases: set[str] = set()
        self._lease_ids = itertools.count()
        self._lease_prefix = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._slot_lock = asyncio.Lock()
        self._slot_freed = asyncio.Event()

    # -- rate ---------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait until this caller may send one request to the host."""
        if self.config.rate <= 0:
            return
        while True:
            self._waiting += 1
            try:
                token = self._take()
                while token is None:
                    task = self._refill_task
                    if task is None or task.done():
                        task = self._start_refill()
                    await asyncio.shield(task)
                    token = self._take()
            finally:
                self._waiting -= 1
            generation = self._generation
            while (delay := token - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            if generation == self._generation:
                return
            # A throttle arrived while we waited for our slot: the token is void.

    def _take(self) -> float | None:
        horizon = time.monotonic() - STALE_TOKEN_S
        tokens = self._tokens
        while tokens:
            token = tokens.popleft()
            if token >= horizon:
                return token
        return None

    def _start_refill(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._refill())
        self._refill_task = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._refill_task is done:
                self._refill_task = None
            if not done.cancelled():
                done.exception()  # retrieved: waiters re-raise it from their shield

        task.add_done_callback(finished)
        return task

    def _batch_size(self) -> int:
        per_window = math.ceil(self.effective_rate * self.config.batch_window_s)
        return max(1, min(self._waiting, per_window))

    async def _refill(self) -> None:
        """Fetch at least one token, sleeping through cooldowns and a full schedule."""
        config = self.config
        horizon_s = 2 * config.batch_window_s
        # While this process still holds slots ahead, ask only when they run
        # low: the coroutines coming back meanwhile make the next batch larger.
        ahead = self._reserved_until - config.batch_window_s / 2 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        while self._waiting > 0:
            k = self._batch_size()
            reply = await self._acquire_script(
                keys=[self._key],
                args=[
                    _num(config.rate),
                    config.burst,
                    _num(config.floor_rate),
                    _num(config.rate / config.recover_s),
                    k,
                    _num(horizon_s * 1e6),
                    STATE_TTL_MS,
                ],
            )
            arrived = time.monotonic()
            granted, first_us, interval_us, rate, cooldown_us = _parse(reply)
            self.effective_rate = rate
            if cooldown_us > 0:
                self._cooldown_until = arrived + cooldown_us / 1e6
                await asyncio.sleep(cooldown_us / 1e6)
                continue
            first, interval = first_us / 1e6, interval_us / 1e6
            if granted > 0:
                self._tokens.extend(arrived + max(0.0, first + i * interval) for i in range(int(granted)))
                self._reserved_until = self._tokens[-1]
                return
            # Nothing within the horizon yet: come back when a whole batch fits.
            await asyncio.sleep(max(MIN_WAIT_S, first + (k - 1) * interval - horizon_s))

    async def on_throttle(self, retry_after_s: float | None = None) -> None:
        """The host pushed back: start (or extend) the shared cooldown and halve the rate."""
        if self.config.rate <= 0:
            return
        now = time.monotonic()
        self._tokens.clear()
        self._reserved_until = 0.0
        self._generation += 1
        if now < self._cooldown_until and (retry_after_s is None or now + retry_after_s <= self._cooldown_until):
            return  # this process already knows about the cooldown: save the round trip
        config = self.config
        retry_after_us = -1.0 if retry_after_s is None else min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S) * 1e6
        reply = await self._throttle_script(
            keys=[self._key],
            args=[
                _num(config.rate),
                config.burst,
                _num(config.floor_rate),
                _num(config.rate / config.recover_s),
                _num(config.first_cooldown_s * 1e6),
                _num(config.ban_cooldown_s * 1e6),
                _num(retry_after_us),
                STATE_TTL_MS,
            ],
        )
        fresh, cooldown_us, rate, bans = _parse(reply)
        self.effective_rate = rate
        self._cooldown_until = time.monotonic() + cooldown_us / 1e6
        if fresh:
            log.warning(
                "rate limit %s: throttled (ban %d): pausing %.1fs, rate now %.2f/s of %.2f/s",
                self.host,
                int(bans),
                cooldown_us / 1e6,
                rate,
                config.rate,
            )

    def on_success(self) -> None:
        """Count a success. Recovery itself is time-based, inside the acquire script,
        so the shared rate climbs back without any extra round trip."""
        self.successes += 1

    # -- in-flight cap -----------------------------------------------------------

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a cluster-wide in-flight lease for the body (a no-op without a cap).

        Take the slot before ``acquire`` so no rate token goes stale while
        waiting for a slot.
        """
        if self.config.inflight_cap <= 0:
            yield
            return
        lease = await self.acquire_slot()
        try:
            yield
        finally:
            try:
                await self.release_slot(lease)
            except RedisError as exc:
                # Raising here would hide the body's own error; the TTL frees it.
                log.warning(
                    "rate limit %s: lease not released (%s); it expires in %.0fs",
                    self.host,
                    exc,
                    self.config.lease_ttl_s,
                )

    async def acquire_slot(self) -> str:
        """Wait for an in-flight lease and return its id ("" when there is no cap)."""
        config = self.config
        if config.inflight_cap <= 0:
            return ""
        lease = f"{self._lease_prefix}:{next(self._lease_ids)}"
        async with self._slot_lock:  # one poller per process; the rest queue here
            delay = SLOT_POLL_MIN_S
            while True:
                freed = self._slot_freed
                reply = await self._slot_script(
                    keys=[self._inflight_key],
                    args=[config.inflight_cap, _num(config.lease_ttl_s * 1e6), lease],
                )
                leased, expires_us = _parse(reply)
                if leased:
                    self._leases.add(lease)
                    return lease
                wait = max(MIN_WAIT_S, min(delay, expires_us / 1e6))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), wait)
                delay = min(2 * delay, SLOT_POLL_MAX_S)

    async def release_slot(self, lease: str) -> None:
        """Give a lease back and wake this process's poller."""
        if not lease:
            return
        self._leases.discard(lease)
        try:
            await self._redis.zrem(self._inflight_key, lease)
        finally:
            freed, self._slot_freed = self._slot_freed, asyncio.Event()
            freed.set()

    async def close(self) -> None:
        """Stop the refill and give back every lease this process still holds."""
        task = self._refill_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await task
        if self._leases:
            leases, self._leases = list(self._leases), set()
            with contextlib.suppress(RedisError):
                await self._redis.zrem(self._inflight_key, *leases)


def build_limiter(
    redis: aioredis.Redis,
    host: str,
    config: RateLimitConfig,
    prefix: str = DEFAULT_PREFIX,
) -> HostRateLimiter | NullLimiter:
    """The limiter for ``config``: a ``NullLimiter`` when nothing is limited."""
    if config.rate <= 0 and config.inflight_cap <= 0:
        return NullLimiter()
    return HostRateLimiter(redis, host, config, prefix=prefix)


async def read_state(redis: aioredis.Redis, host: str, prefix: str = DEFAULT_PREFIX) -> dict[str, float]:
    """The shared state of one host's limiter, for ``scraper stats`` (zeros if unused)."""
    reply = await redis.eval(_READ_LUA, 2, ratelimit_key(host, prefix), inflight_key(host, prefix))
    configured, effective, cooldown_us, bans, live = _parse(reply)
    return {
        "configured_rate": configured,
        "effective_rate": round(effective, 3),
        "cooldown_remaining_s": round(cooldown_us / 1e6, 3),
        "bans": int(bans),
        "in_flight": int(live),
    }


def _num(value: float) -> str:
    """A float for a script argument: plain decimal, no exponent, no lost digits."""
    return f"{value:.6f}"


def _parse(reply: Sequence[Any]) -> list[float]:
    """A script reply (ints and decimal strings, bytes or str) as floats."""
    return [float(item) for item in reply]
