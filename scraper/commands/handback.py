"""Hand back the pages of this machine's dead consumers, at once.

A consumer killed hard (kill -9, a second Ctrl-C) leaves its claimed pages
pending; other consumers take them over only after ``claim_idle_s`` (90 s by
default), because from elsewhere a slow consumer and a dead one look alike.
On the machine it ran on, a consumer whose process is gone is provably dead:
`run` puts its pages back in the queue (a copy added, the old entry
acknowledged and deleted, in one transaction, like a drain's release) and
forgets the consumer, so a rerun starts at once and nothing stays in flight.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from scraper.keys import CONSUMER_GROUP, TASK_FIELD, TargetKeys
from scraper.liveness import process_gone

_HANDBACK_CONSUMER = "handback"
_BATCH = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dead_here(name: str) -> bool:
    """``<hostname>[-<run id>]-<pid>-<index>`` of this machine, whose process is gone."""
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    prefix, pid, _ = parts
    host = socket.gethostname()
    here = prefix == host or prefix.rsplit("-", 1)[0] == host  # with or without the supervisor's run id
    return here and process_gone(int(pid))


async def hand_back_dead_consumers(client: aioredis.Redis, keys: TargetKeys) -> int:
    """Pages returned to the queue; 0 when no consumer of this machine died holding any."""
    try:
        consumers: Any = await client.xinfo_consumers(keys.tasks, CONSUMER_GROUP)
    except ResponseError:
        return 0  # no stream or group yet
    returned = 0
    for info in consumers:
        name = _text(info["name"])
        if not _dead_here(name):
            continue
        while True:
            pending: Any = await client.xpending_range(
                keys.tasks, CONSUMER_GROUP, min="-", max="+", count=_BATCH, consumername=name
            )
            if not pending:
                break
            ids = [item["message_id"] for item in pending]
            # Take them first (no one else can, while they are idle less than claim_idle_s).
            claimed: Any = await client.xclaim(
                keys.tasks, CONSUMER_GROUP, _HANDBACK_CONSUMER, min_idle_time=0, message_ids=ids
            )
            pipe = client.pipeline(transaction=True)
            for _entry_id, fields in claimed:
                if fields:
                    pipe.xadd(keys.tasks, {TASK_FIELD: fields[TASK_FIELD.encode()]})
                    returned += 1
            pipe.xack(keys.tasks, CONSUMER_GROUP, *ids)
            pipe.xdel(keys.tasks, *ids)
            await pipe.execute()
        await client.xgroup_delconsumer(keys.tasks, CONSUMER_GROUP, name)
        await client.hdel(keys.consumers, name)
    await _forget(client, keys, _HANDBACK_CONSUMER)
    return returned


async def _forget(client: aioredis.Redis, keys: TargetKeys, name: str) -> None:
    with contextlib.suppress(ResponseError):
        await client.xgroup_delconsumer(keys.tasks, CONSUMER_GROUP, name)
