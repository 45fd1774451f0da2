"""Every Redis key and stream name the project uses, in one place.

The ``{target}`` braces are a Redis Cluster hash tag: all keys of one target
hash to one slot, so the Lua scripts and MULTI blocks that touch several of
them work on a cluster too. Keys of one host (the shared rate limiter) carry
the host as their hash tag instead; no script mixes the two families.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "scraper"
CONSUMER_GROUP = "workers"
TASK_FIELD = "t"  # the one field of a task stream entry: the orjson task


@dataclass(frozen=True, slots=True)
class TargetKeys:
    """Key names for one target. Build once, pass around."""

    target: str
    prefix: str = DEFAULT_PREFIX

    def _key(self, suffix: str) -> str:
        return f"{self.prefix}:{{{self.target}}}:{suffix}"

    @property
    def tasks(self) -> str:
        """Stream of page tasks; consumer group ``workers`` (KEDA scales on its lag)."""
        return self._key("tasks")

    @property
    def videos(self) -> str:
        """Sorted set of the video list's aids (score = position in the list): what `report` lists."""
        return self._key("videos")

    def video(self, oid: int) -> str:
        """Hash: one video's completeness ledger (see scraper.ledger)."""
        return self._key(f"video:{oid}")

    @property
    def video_pattern(self) -> str:
        """SCAN pattern matching every ledger hash of the target."""
        return self._key("video:*")

    def rcounts(self, oid: int) -> str:
        """String: per thread of the video, its root rpid and last fetched rcount, 12 packed bytes (refresh)."""
        return self._key(f"rcounts:{oid}")

    @property
    def rcounts_pattern(self) -> str:
        return self._key("rcounts:*")

    @property
    def wbi(self) -> str:
        """Hash: the WBI keys shared by every process (img_key, sub_key, version, fetched_at)."""
        return self._key("wbi")

    @property
    def device(self) -> str:
        """Hash: the device identity shared by every process (buvid3, b_nut, version, fetched_at)."""
        return self._key("device")

    def lock(self, name: str) -> str:
        """String with a TTL: one process renews a shared credential at a time."""
        return self._key(f"lock:{name}")

    @property
    def delayed(self) -> str:
        """Sorted set of retries waiting for their backoff (score = due, ms)."""
        return self._key("delayed")

    @property
    def dead(self) -> str:
        """Stream of tasks that exhausted their attempts, with the last error."""
        return self._key("dead")

    @property
    def final(self) -> str:
        """Stream of pages that ended as "not available" (closed, deleted, depth cap)."""
        return self._key("final")

    @property
    def stats(self) -> str:
        """Hash of monotonically increasing counters (pages, comments, retries:<reason>...)."""
        return self._key("stats")

    @property
    def rate(self) -> str:
        """Ring of recent seconds for rates: hash of 64 slots ``<s % 64>`` -> ``"<s>:<pages>:<comments>"``.

        Fixed size whatever the crawl's length; see ``scraper.rates``."""
        return self._key("rate")

    @property
    def meta(self) -> str:
        """Hash: crawl start, videos, state."""
        return self._key("meta")

    @property
    def consumers(self) -> str:
        """Hash: consumer name -> orjson heartbeat (pod, pid, ts, in_flight)."""
        return self._key("consumers")

    def all(self) -> list[str]:
        """Every key of the target (what `scraper reset` deletes)."""
        names = ("tasks", "videos", "delayed", "dead", "final", "stats", "rate", "meta", "consumers", "wbi", "device")
        # "seen" is the fingerprint set of releases before the ledger: reset still clears it.
        return [getattr(self, name) for name in names] + [self._key("seen")]


def target_index_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Set of every target name seen, so ``scraper stats`` can list them."""
    return f"{prefix}:targets"


def ratelimit_key(host: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Hash with the shared limiter state for one host (GCRA time, AIMD rate, cooldown)."""
    return f"{prefix}:ratelimit:{{{host}}}"


def inflight_key(host: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Sorted set of cluster-wide in-flight request leases for one host."""
    return f"{prefix}:ratelimit:{{{host}}}:inflight"
