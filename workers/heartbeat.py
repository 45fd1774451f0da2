"""Liveness, twice: a field in Redis for `scraper stats` and takeovers, a local file for the probe.

The local file is what `scraper health` (the Kubernetes exec probe) reads:
a worker whose Redis is briefly away is still alive and must not be killed
for it, so the file is written whatever Redis does. It holds the process's
state (pid, pages held unsettled, when it last made progress, what it waits
for) so the probe can tell a wedged process from a waiting one
(``workers.health``).

The Redis record is what other consumers read before a takeover
(``workers.leases``): a heartbeat older than ``dead_after_s`` proves its
consumer dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from scraper.keys import CONSUMER_GROUP, TargetKeys
from workers.health import process_start

log = logging.getLogger(__name__)


def consumer_name(index: int, run_id: str = "") -> str:
    """Unique per pod, supervisor start and process: ``<hostname>[-<run id>]-<pid>-<child index>``.

    A restarted container has the same host name and, in a fresh PID
    namespace, the same pids: without the run id its consumers would inherit
    the pending entries of the dead ones as if they held them.
    """
    return child_consumer_name(socket.gethostname(), run_id, os.getpid(), index)


def child_consumer_name(host: str, run_id: str, pid: int, index: int) -> str:
    """The name a child with this pid chose (the supervisor marks it dead)."""
    return f"{host}-{run_id}-{pid}-{index}" if run_id else f"{host}-{pid}-{index}"


class Heartbeat:
    def __init__(self, client: aioredis.Redis, keys: TargetKeys, name: str, directory: Path, interval_s: float) -> None:
        self.redis = client
        self.keys = keys
        self.name = name
        self.interval_s = interval_s
        self.directory = directory
        self.file = directory / f"{name}.beat"
        self.start = process_start(os.getpid())  # tells a reused pid apart (workers.health)

    def write_file(self, state: dict[str, Any]) -> None:
        record = {"name": self.name, "pid": os.getpid(), "start": self.start, "ts": time.time(), **state}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Write then rename: the probe never reads a half-written file.
            partial = self.file.with_suffix(".tmp")
            partial.write_bytes(orjson.dumps(record))
            partial.replace(self.file)
        except OSError as exc:  # a read-only /tmp must not stop the crawl
            log.debug("heartbeat file %s: %s", self.file, exc)

    async def beat(self, state: dict[str, Any]) -> None:
        self.write_file(state)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "ts": time.time(), **state}
        await self.redis.hset(self.keys.consumers, self.name, orjson.dumps(record))

    async def run(self, state: Callable[[], dict[str, Any]], on_ok: Callable[[], None] | None = None) -> None:
        while True:
            try:
                # Bounded: a Redis that hangs (no reply, no reset) must not stop
                # the file, or the probe would kill a process that only waits.
                await asyncio.wait_for(self.beat(state()), timeout=max(self.interval_s, 1.0) * 2)
                if on_ok is not None:
                    on_ok()
            except TimeoutError:
                self.write_file({**state(), "waiting": "redis"})
            except (OSError, RedisError):
                # Alive, only Redis is away or refuses writes: the file says so.
                # (A bug-class error shows up in the settle or claim path.)
                self.write_file(state())
            await asyncio.sleep(self.interval_s)

    async def remove(self) -> None:
        """A clean exit: no heartbeat, and no ghost member of the group (issue 16)."""
        with contextlib.suppress(OSError):
            self.file.unlink(missing_ok=True)
        await self.redis.hdel(self.keys.consumers, self.name)
        try:
            members = await self.redis.xinfo_consumers(self.keys.tasks, CONSUMER_GROUP)
        except ResponseError:
            return  # no stream or group (a reset): nothing to forget
        for member in members:
            name = member["name"].decode() if isinstance(member["name"], bytes) else str(member["name"])
            # Only with nothing pending: DELCONSUMER drops a member's pending entries.
            if name == self.name and int(member["pending"]) == 0:
                await self.redis.xgroup_delconsumer(self.keys.tasks, CONSUMER_GROUP, self.name)

    async def mark_dead(self) -> None:
        """Tell the other consumers to take our entries over now, not after dead_after_s."""
        with contextlib.suppress(OSError):
            self.file.unlink(missing_ok=True)
        await mark_dead(self.redis, self.keys, self.name)


async def mark_dead(client: aioredis.Redis, keys: TargetKeys, name: str) -> None:
    record = {"host": socket.gethostname(), "ts": time.time(), "dead": True}
    await client.hset(keys.consumers, name, orjson.dumps(record))


async def prune_consumers(
    client: aioredis.Redis, keys: TargetKeys, *, keep: str, idle_limit_ms: int, heartbeat_max_age_s: float
) -> list[str]:
    """Forget consumers that died: group members with nothing pending that have
    been idle for long, and heartbeats that stopped. Pending entries are never
    touched here: they are taken over by XCLAIM first, which empties them."""
    removed: list[str] = []
    try:
        members = await client.xinfo_consumers(keys.tasks, CONSUMER_GROUP)
    except ResponseError:
        members = []  # no stream or group yet
    for member in members:
        name = member["name"].decode() if isinstance(member["name"], bytes) else str(member["name"])
        if name != keep and int(member["pending"]) == 0 and int(member["idle"]) >= idle_limit_ms:
            await client.xgroup_delconsumer(keys.tasks, CONSUMER_GROUP, name)
            removed.append(name)
    now = time.time()
    beats: dict[bytes, bytes] = await client.hgetall(keys.consumers)
    for field, raw in beats.items():
        name = field.decode()
        if name != keep and now - float(orjson.loads(raw).get("ts", 0)) > heartbeat_max_age_s:
            await client.hdel(keys.consumers, name)
            removed.append(name)
    return removed


def fresh_heartbeats(directory: Path, max_age_s: float) -> list[Path]:
    """Heartbeat files written within ``max_age_s`` (``workers.health`` judges them)."""
    now = time.time()
    try:
        files = list(directory.glob("*.beat"))
    except OSError:
        return []
    fresh = []
    for path in files:
        try:
            if now - path.stat().st_mtime <= max_age_s:
                fresh.append(path)
        except FileNotFoundError:
            continue
    return fresh
