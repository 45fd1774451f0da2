"""Read a target's state from Redis alone: queue, progress, speed, consumers.

Works from any machine that reaches Redis, with no worker running. Every read
here is bounded by the number of counters, consumers and ring slots, never by
how many pages or seconds the crawl has seen, so ``stats``, the progress line
and the exporter cost the same after a minute or after a month.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from scraper import rates
from scraper.keys import CONSUMER_GROUP, TargetKeys, target_index_key
from scraper.ledger import read_videos, summarize
from scraper.queue import read_counts


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def list_targets(client: aioredis.Redis, prefix: str) -> list[str]:
    return sorted(_text(t) for t in await client.smembers(target_index_key(prefix)))


async def read_stats(client: aioredis.Redis, keys: TargetKeys, *, limiter_host: str | None = None) -> dict[str, Any]:
    counts = await read_counts(client, keys)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.stats)
    pipe.hmget(keys.rate, rates.SLOT_FIELDS)
    pipe.hgetall(keys.consumers)
    pipe.hgetall(keys.meta)
    raw_stats, raw_ring, raw_consumers, raw_meta = await pipe.execute()
    counters = {_text(k): _int(v) for k, v in raw_stats.items()}
    now = time.time()
    speed = rates.window_rates(rates.parse_ring(raw_ring), int(now))

    group_consumers: dict[str, dict[str, int]] = {}
    try:
        for info in await client.xinfo_consumers(keys.tasks, CONSUMER_GROUP):
            group_consumers[_text(info["name"])] = {"pending": _int(info["pending"]), "idle_ms": _int(info["idle"])}
    except ResponseError:
        pass  # no stream yet
    consumers = []
    for name_raw, beat_raw in raw_consumers.items():
        name = _text(name_raw)
        beat = orjson.loads(beat_raw)
        group = group_consumers.get(name, {})
        consumers.append(
            {
                "name": name,
                "host": beat.get("host"),
                "pid": beat.get("pid"),
                "pending": group.get("pending", 0),
                "idle_s": round(group.get("idle_ms", 0) / 1000, 1),
                "heartbeat_age_s": round(now - float(beat.get("ts", 0)), 1),
                "in_flight": beat.get("in_flight", 0),
                "pages_done": beat.get("pages_done", 0),
                "waiting": beat.get("waiting", ""),  # redis | redis-writes | site | "" (workers.consumer)
            }
        )
    consumers.sort(key=lambda c: c["name"])
    # What the crawl waits for: Redis, the site's rate limit, or dead consumers' pages.
    waiting_for = sorted({c["waiting"] for c in consumers if c["waiting"] and c["heartbeat_age_s"] < 30})
    if any(c["pending"] and c["heartbeat_age_s"] >= 10 for c in consumers):
        waiting_for.append("takeover of dead consumers")
    waiting_for[:0] = await _redis_refusing_writes(client)

    meta = {_text(k): _text(v) for k, v in raw_meta.items()}
    # A refresh is a crawl of its own: its progress counts from where it began
    # (scraper.refresh stores the counters' values then in meta ``base_*``).
    base = {name: int(float(meta.get(f"base_{name}", 0))) for name in BASE_COUNTERS}
    pages_known = counters.get("pages_known", 0) - base["pages_known"]
    pages_done = counters.get("pages_done", 0) - base["pages_done"]
    settled = pages_done + counters.get("pages_final", 0) + counters.get("dead", 0) - base["pages_final"] - base["dead"]
    remaining = max(pages_known - settled, 0)
    rate = speed["pages_per_s_10s"] or speed["pages_per_s_60s"]
    result: dict[str, Any] = {
        "target": keys.target,
        "queued": counts.queued,
        "in_flight": counts.in_flight,
        "delayed": counts.delayed,
        "dead": counts.dead,
        "pages_known": pages_known,
        "pages_done": pages_done,
        "pages_remaining": remaining,
        "comments": counters.get("comments", 0) - base["comments"],
        "mode": meta.get("mode", "crawl"),
        "retries": counters.get("retries", 0),
        "retries_by_reason": {k.partition(":")[2]: v for k, v in counters.items() if k.startswith("retries:")},
        "bans": counters.get("bans", 0),
        "final": {k.partition(":")[2]: v for k, v in counters.items() if k.startswith("final:")},
        "reclaimed": counters.get("reclaimed", 0),
        "renewed": {k.partition(":")[2]: v for k, v in counters.items() if k.startswith("renewed:")},
        "videos": summarize(await read_videos(client, keys)),  # completeness: count by status
        **speed,
        "eta_s": round(remaining / rate, 1) if rate and remaining else (0.0 if not remaining else None),
        "consumers": consumers,
        "waiting_for": waiting_for,
        "meta": meta,
        "done": pages_known > 0 and counts.length == 0 and counts.delayed == 0,
    }
    if limiter_host:
        from scraper.ratelimit import read_state  # noqa: PLC0415

        result["rate_limit"] = await read_state(client, limiter_host, keys.prefix)
    return result


BASE_COUNTERS = ("pages_known", "pages_done", "pages_final", "dead", "comments")


async def mark_new_crawl(client: aioredis.Redis, keys: TargetKeys, mode: str) -> None:
    """A refresh begins: ``read_stats`` shows its progress from here (counters never go back)."""
    values = await client.hmget(keys.stats, list(BASE_COUNTERS))
    base = {f"base_{name}": _int(v) for name, v in zip(BASE_COUNTERS, values, strict=True)}
    await client.hset(keys.meta, mapping={**base, "mode": mode, "started_at": time.time()})


GAUGE_COUNTERS = ("pages_known", "pages_done", "pages_final", "comments", "retries", "bans", "dead", "reclaimed")


async def read_gauges(client: aioredis.Redis, keys: TargetKeys, *, limiter_host: str | None = None) -> dict[str, Any]:
    """The numbers a metrics scrape needs, in two round trips of fixed size.

    Lighter than ``read_stats`` (no per-consumer detail, no meta): named
    counters by HMGET, the rate ring by HMGET, the consumer count by HLEN.
    Keys: queued, in_flight, delayed, dead, length, every name of
    ``GAUGE_COUNTERS`` (``dead`` is the dead-letter stream's length),
    consumers (an int), the ``pages_per_s_*`` / ``comments_per_s_*`` rates,
    and ``rate_limit`` when ``limiter_host`` is given.
    """
    counts = await read_counts(client, keys)
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.stats, list(GAUGE_COUNTERS))
    pipe.hmget(keys.rate, rates.SLOT_FIELDS)
    pipe.hlen(keys.consumers)
    raw_counters, raw_ring, consumers = await pipe.execute()
    result: dict[str, Any] = {name: _int(value) for name, value in zip(GAUGE_COUNTERS, raw_counters, strict=True)}
    result.update(
        target=keys.target,
        queued=counts.queued,
        in_flight=counts.in_flight,
        delayed=counts.delayed,
        dead=counts.dead,
        length=counts.length,
        consumers=int(consumers),
        **rates.window_rates(rates.parse_ring(raw_ring), int(time.time())),
    )
    if limiter_host:
        from scraper.ratelimit import read_state  # noqa: PLC0415

        result["rate_limit"] = await read_state(client, limiter_host, keys.prefix)
    return result


async def _redis_refusing_writes(client: aioredis.Redis) -> list[str]:
    """Why Redis refuses writes now, if it does (then no heartbeat can say so)."""
    try:
        # two small sections, not the whole INFO (~5 KB): stats is read every progress tick
        info = {**await client.info("replication"), **await client.info("memory")}
    except ResponseError:  # INFO may be denied on a managed Redis
        return []
    reasons = []
    if info.get("role") == "slave":
        reasons.append("redis read-only (a replica)")
    maxmemory = int(info.get("maxmemory", 0) or 0)
    if maxmemory and int(info.get("used_memory", 0) or 0) >= maxmemory:
        reasons.append("redis memory full (maxmemory)")
    return reasons
