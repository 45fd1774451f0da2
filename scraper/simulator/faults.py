"""Misbehaviour on purpose: injected faults and the per-client rate limit.

Both are deterministic. A fault is chosen from a hash of (seed, raw URL, how
many times that URL was asked before), so the same crawl order meets the same
faults, and no URL is faulted more than ``max_faults_per_url`` times: a client
that tries each page ``max_faults_per_url + 1`` times always completes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from scraper.simulator.stats import FAULT_KINDS


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    variant: int  # spare hash bits, e.g. which failure shape


class FaultPlan:
    """Decides, per request, whether and how to misbehave."""

    def __init__(self, *, seed: int, rates: dict[str, float], max_per_url: int) -> None:
        unknown = set(rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        total = 0.0
        self._edges: list[tuple[float, str]] = []
        for kind in FAULT_KINDS:
            rate = rates.get(kind, 0.0)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{kind} rate must be within 0..1, got {rate}")
            if rate and total < 1.0:
                # Rates adding up past 1: the later kinds get what is left.
                total = min(1.0, total + rate)
                self._edges.append((total, kind))
        self._seed = seed
        self._max_per_url = max_per_url
        self._asked: dict[str, int] = {}
        self._faulted: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._edges) and self._max_per_url > 0

    def reset(self) -> None:
        self._asked.clear()
        self._faulted.clear()

    def decide(self, url: str) -> Fault | None:
        nth = self._asked.get(url, 0)
        self._asked[url] = nth + 1
        faulted = self._faulted.get(url, 0)
        if faulted >= self._max_per_url:
            return None
        digest = hashlib.blake2b(f"{self._seed}\x00{url}\x00{nth}".encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        u = (value >> 11) / float(1 << 53)
        for edge, kind in self._edges:
            if u < edge:
                self._faulted[url] = faulted + 1
                return Fault(kind, value & 0xFF)
        return None


class RateLimiter:
    """Token bucket per client; over the limit means a ban or a 429.

    ``check`` returns None when the request may pass, else the seconds the
    client should wait (the rest of its ban, or until its next token).
    """

    def __init__(self, *, rate_per_s: float, burst: int, ban_s: float, ban_on_limit: bool) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self._rate = rate_per_s
        self._burst = float(max(1, burst))
        self._ban_s = ban_s
        self._ban_on_limit = ban_on_limit
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._banned_until: dict[str, float] = {}

    def reset(self) -> None:
        self._buckets.clear()
        self._banned_until.clear()

    def check(self, client: str, now: float) -> float | None:
        banned_until = self._banned_until.get(client)
        if banned_until is not None:
            if now < banned_until:
                return banned_until - now
            del self._banned_until[client]
        tokens, at = self._buckets.get(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return None
        self._buckets[client] = (tokens, now)
        if self._ban_on_limit:
            self._banned_until[client] = now + self._ban_s
            return self._ban_s
        return (1.0 - tokens) / self._rate


def retry_after_header(wait_s: float) -> str:
    """Retry-After takes whole seconds; never say 0 to a client that must wait."""
    return str(max(1, math.ceil(wait_s)))
