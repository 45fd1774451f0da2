"""One policy per Redis failure class, applied at one boundary: ``RedisGuard.call``.

::

    class                         example                      what the worker does
    outage                        ConnectionError, timeout     wait, reconnect with backoff, go on
    writes refused                OOM, READONLY, MISCONF       stop claiming and fetching, keep what
                                                               is fetched, retry the settle, resume
    target reset                  NOGROUP, a vanished stream   stop cleanly (TargetReset)
    anything else                 any other ResponseError      a bug: RedisBug, the process exits
                                                               non-zero, the supervisor restarts it

Repeated errors of one class log one line with a count per interval
(``ErrorLog``), never a traceback per page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
_BACKOFF_MAX_S = 5.0


class Fault(Enum):
    OUTAGE = "redis unreachable"
    WRITES_REFUSED = "redis refuses writes"
    TARGET_RESET = "target reset"
    BUG = "unexpected redis error"


class TargetReset(Exception):
    """The consumer group or the stream vanished under a running worker."""


class RedisBug(Exception):
    """A Redis error no policy covers: the process stops and is restarted."""


def classify(exc: BaseException) -> Fault | None:
    """The failure class of an exception raised by a Redis call (None: not Redis's)."""
    if isinstance(exc, (OutOfMemoryError, ReadOnlyError)):
        return Fault.WRITES_REFUSED
    if isinstance(exc, ResponseError):
        # Inside a pipeline the text is prefixed ("Command # 3 (XACK ...) of
        # pipeline caused error: NOGROUP ..."): look for the code anywhere.
        text = str(exc)
        if any(code in text for code in _REFUSED):
            return Fault.WRITES_REFUSED
        if any(code in text for code in _TRANSIENT):
            return Fault.OUTAGE
        if "NOGROUP" in text or "no such key" in text.lower():
            return Fault.TARGET_RESET
        return Fault.BUG
    if isinstance(exc, REDIS_DOWN):
        return Fault.OUTAGE
    if isinstance(exc, RedisError):
        return Fault.BUG
    return None


# Codes of "Redis cannot take writes now": memory full, a replica (failover),
# a failed background save, and blocked clients released by a role change.
_REFUSED = ("OOM ", "READONLY", "MISCONF", "UNBLOCKED")
# Codes of a server that is coming back: loading its data, a master away.
_TRANSIENT = ("LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def short(exc: BaseException) -> str:
    """The server's words, without redis-py's pipeline preamble, on one line."""
    text = str(exc)
    if "caused error: " in text:
        text = text.split("caused error: ", 1)[1].strip("()'\",")
    return text.splitlines()[0][:120] if text else type(exc).__name__


class ErrorLog:
    """At most one line per ``interval_s`` for each kind of error, with the count."""

    def __init__(self, interval_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def error(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        self._count[kind] = self._count.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            return
        count = self._count.pop(kind)
        self._last[kind] = now
        suffix = f" ({count} times in the last {self.interval_s:g}s)" if last is not None and count > 1 else ""
        log.warning(message + suffix, *args)

    def recovered(self, kind: str, message: str, *args: object) -> None:
        if self._last.pop(kind, None) is not None:
            self._count.pop(kind, None)
            log.warning(message, *args)


class RedisGuard:
    """Runs Redis calls under the policy; keeps the state others wait on.

    ``writable`` is set while Redis takes writes: the claim loop and the fetch
    coroutines wait on it. ``reconnected`` counts outages survived, so the
    lease keeper knows when to re-check its own pending list.
    """

    def __init__(self, name: str, errors: ErrorLog | None = None) -> None:
        self.name = name
        self.errors = errors or ErrorLog()
        self.writable = asyncio.Event()
        self.writable.set()
        self.down_since: float | None = None
        self.refused_since: float | None = None
        self.reconnects = 0
        self.back_at: float | None = None  # when the last outage or refusal ended (monotonic)

    @property
    def waiting_for(self) -> str:
        """What this process waits for, for health and stats: '' when nothing."""
        if self.down_since is not None:
            return "redis"
        if self.refused_since is not None:
            return "redis-writes"
        return ""

    async def call(self, call: Callable[[], Awaitable[T]], *, writes: bool = False) -> T:
        """Run ``call`` until it succeeds; outages and refused writes are waited out.

        Raises TargetReset or RedisBug for the classes that cannot be waited out.
        ``writes``: a success proves Redis takes writes again (reads succeed
        while writes are refused, so only a write may reopen the gate).
        """
        delay = 0.1
        while True:
            try:
                result = await call()
            except Exception as exc:
                fault = classify(exc)
                if fault is None:
                    raise
                current = asyncio.current_task()
                if fault is Fault.OUTAGE and current is not None and current.cancelling():
                    # The client turned our cancellation into a connection or
                    # timeout error: retrying would swallow the cancel for good.
                    raise asyncio.CancelledError from exc
                if fault is Fault.TARGET_RESET:
                    raise TargetReset(short(exc)) from None
                if fault is Fault.BUG:
                    raise RedisBug(f"{type(exc).__name__}: {short(exc)}") from None
                self._failed(fault, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            self._succeeded(writes)
            return result

    def _failed(self, fault: Fault, exc: Exception) -> None:
        now = time.monotonic()
        if fault is Fault.OUTAGE:
            if self.down_since is None:
                self.down_since = now
            self.errors.error("outage", "%s: Redis unreachable (%s); retrying with backoff", self.name, exc)
        else:
            if self.refused_since is None:
                self.refused_since = now
            self.writable.clear()
            self.errors.error(
                "refused",
                "%s: Redis refuses writes (%s): claiming and fetching paused, settle retried",
                self.name,
                short(exc),
            )

    def writes_accepted(self) -> None:
        """A write outside ``call`` went through (the heartbeat): Redis takes writes."""
        self._succeeded(True)

    def _succeeded(self, writes: bool) -> None:
        now = time.monotonic()
        if self.down_since is not None:
            self.errors.recovered("outage", "%s: Redis is back after %.1fs", self.name, now - self.down_since)
            self.down_since = None
            self.reconnects += 1
            self.back_at = now
        if writes and self.refused_since is not None:
            self.errors.recovered(
                "refused", "%s: Redis takes writes again after %.1fs: resuming", self.name, now - self.refused_since
            )
            self.refused_since = None
            self.back_at = now  # heartbeats could not be written either: give them time
            self.writable.set()
