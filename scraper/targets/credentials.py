"""A credential every process of every pod shares through Redis (WBI keys, a device cookie).

One Redis hash holds the values, a ``version`` and ``fetched_at``. A process
keeps a local copy and reads Redis only when it has none or it is too old.
Renewal is a compare-and-set on the version: a caller says which version the
service refused; if Redis already holds a newer one, that is the answer. Else
one process takes a short lock and fetches, and everyone else waits for the
version to move. So N coroutines in M processes seeing -403 at once cost one
fetch, not N.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

Fetcher = Callable[[], Awaitable[dict[str, str]]]
_LOCK_TTL_MS = 15_000
_WAIT_STEP_S = 0.05
# A renewal is one request to the site: usually done within a few ms. The
# first looks come sooner, so a worker that lost the race does not idle a
# whole step (at the start of every crawl, for the device cookie and then the
# WBI keys: up to 0.1 s of a short job; issue 15).
_FIRST_WAIT_S = 0.005


class SharedCredential:
    def __init__(
        self,
        client: aioredis.Redis,
        key: str,
        lock_key: str,
        stats_key: str,
        fetcher: Fetcher,
        *,
        name: str,
        max_age_s: float,
    ) -> None:
        self.redis = client
        self.key = key
        self.lock_key = lock_key
        self.stats_key = stats_key
        self.fetcher = fetcher
        self.name = name
        self.max_age_s = max_age_s
        self.values: dict[str, str] = {}
        self.version = 0
        self._fetched_at = 0.0
        self._checked_at = 0.0
        self._local = asyncio.Lock()  # one renewal per process at a time
        self._loading = asyncio.Lock()  # one read of Redis per process at a time (get)

    def _current(self) -> bool:
        """The local copy may be used without asking Redis (checked there within a minute)."""
        now = time.time()
        return bool(self.values) and now - self._fetched_at < self.max_age_s and now - self._checked_at < 60

    def peek(self) -> tuple[dict[str, str], int] | None:
        """``get()``'s answer when the local copy is current, without a coroutine (per request)."""
        return (self.values, self.version) if self._current() else None

    async def get(self) -> tuple[dict[str, str], int]:
        """The current values and their version (fetched once if nobody has yet, or when stale)."""
        if self._current():
            return self.values, self.version
        # One coroutine of this process reads Redis (and renews if it must); the
        # others wait for its answer. Without this, a child's first requests
        # (one per coroutine, 128 by default) each sent an HGETALL, opening a
        # Redis connection apiece, then queued for renew() one after another.
        async with self._loading:
            if not self._current():
                await self._load()
                if not self.values or time.time() - self._fetched_at >= self.max_age_s:
                    await self.renew(self.version)
        return self.values, self.version

    async def _load(self) -> None:
        raw = await self.redis.hgetall(self.key)
        data = {k.decode(): v.decode() for k, v in raw.items()}
        self._checked_at = time.time()
        if "version" in data:
            self.version = int(data.pop("version"))
            self._fetched_at = float(data.pop("fetched_at", "0"))
            self.values = data

    async def renew(self, refused_version: int) -> None:
        """Make sure Redis holds a version newer than ``refused_version`` (fetching it at most once)."""
        async with self._local:
            await self._load()
            if self.values and self.version > refused_version and time.time() - self._fetched_at < self.max_age_s:
                return  # someone renewed it already
            token = f"{time.time()}"
            if await self.redis.set(self.lock_key, token, nx=True, px=_LOCK_TTL_MS):
                try:
                    await self._fetch_and_store(refused_version)
                finally:
                    await self.redis.delete(self.lock_key)
                return
            await self._wait_for_newer(refused_version)

    async def _fetch_and_store(self, refused_version: int) -> None:
        current = await self.redis.hget(self.key, "version")
        if current is not None and int(current) > refused_version and self.values:
            await self._load()
            return
        values = await self.fetcher()
        version = max(int(current or 0), refused_version) + 1
        fetched_at = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.hset(self.key, mapping={**values, "version": version, "fetched_at": fetched_at})
        pipe.hincrby(self.stats_key, f"renewed:{self.name}", 1)
        await pipe.execute()
        self.values, self.version, self._fetched_at, self._checked_at = values, version, fetched_at, fetched_at

    async def _wait_for_newer(self, refused_version: int) -> None:
        deadline = time.monotonic() + _LOCK_TTL_MS / 1000
        step = _FIRST_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(step)
            step = min(step * 2, _WAIT_STEP_S)
            await self._load()
            if self.values and self.version > refused_version:
                return
            if not await self.redis.exists(self.lock_key):  # the holder failed: try ourselves next time
                return
