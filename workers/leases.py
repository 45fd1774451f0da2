"""Claims that cannot outlive their lease, and takeover of the dead only.

Three rules keep every page fetched once while consumers live and die:

- **Fresh while held.** Every ``refresh_s`` a consumer re-claims to itself
  (``XCLAIM ... JUSTID``: idle reset, no new delivery) each entry it still
  holds: waiting in its local queue, in the limiter, in flight or unsettled.
  A page of a live consumer never looks idle, however slow the rate limit.
- **Only the dead are taken over.** A consumer is dead when its heartbeat is
  older than ``dead_after_s`` (or it never had one and the group has not heard
  from it for as long). Its entries are taken over at once, whatever their
  idle time; a live consumer's entries never are.
- **Orphans go home.** After Redis restarts from an AOF that lost its last
  second, acknowledged entries can come back pending under a live consumer
  that no longer holds them. The same refresh pass finds entries pending
  under our own name that we do not hold and takes them into the local
  queue: nothing waits for a takeover the second rule forbids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from scraper.keys import CONSUMER_GROUP, TASK_FIELD, TargetKeys
from scraper.queue import Entry
from scraper.tasks import Task

# KEYS[1] tasks. ARGV: group, me, orphan min idle (ms), orphan limit, then the ids we hold.
# Returns {ids we hold that are no longer ours, orphans as {id, fields} entries}.
_REFRESH_LUA = """
local group, me = ARGV[1], ARGV[2]
local orphan_idle, orphan_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local held, lost = {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  held[id] = true
  local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  if p[1] and p[1][2] == me then
    redis.call('XCLAIM', KEYS[1], group, me, 0, id, 'JUSTID')
  else
    lost[#lost + 1] = id
  end
end
local orphans = {}
if orphan_limit > 0 then
  local mine = redis.call('XPENDING', KEYS[1], group, 'IDLE', orphan_idle, '-', '+', 1000, me)
  for _, p in ipairs(mine) do
    if #orphans >= orphan_limit then break end
    if not held[p[1]] then
      local got = redis.call('XCLAIM', KEYS[1], group, me, 0, p[1])
      if got[1] then orphans[#orphans + 1] = got[1] end
    end
  end
end
return {lost, orphans}
"""


@dataclass(frozen=True, slots=True)
class Refreshed:
    lost: list[bytes]  # held by us a moment ago, now someone else's (or settled)
    orphans: list[Entry]  # pending under our name, not held: ours to finish


@dataclass(frozen=True, slots=True)
class Takeover:
    entries: list[tuple[Entry, int]]  # (entry, times delivered)
    dead: list[str]  # consumers whose entries were taken


class Leases:
    def __init__(self, client: aioredis.Redis, keys: TargetKeys, me: str, *, dead_after_s: float) -> None:
        self.redis = client
        self.keys = keys
        self.me = me
        self.dead_after_s = dead_after_s
        self._refresh = client.register_script(_REFRESH_LUA)

    async def refresh(self, held: list[bytes], *, orphan_idle_ms: int, orphan_limit: int) -> Refreshed:
        lost: list[bytes] = []
        orphans: list[Entry] = []
        chunk = 500  # bound one script's run time: it blocks the server
        for start in range(0, max(len(held), 1), chunk):
            part = held[start : start + chunk]
            limit = orphan_limit - len(orphans) if start == 0 else 0
            result: Any = await self._refresh(
                keys=[self.keys.tasks],
                args=[CONSUMER_GROUP, self.me, orphan_idle_ms, max(limit, 0), *part],
            )
            lost += list(result[0])
            for entry_id, fields in result[1]:
                values = dict(zip(fields[::2], fields[1::2], strict=True))
                payload = values.get(TASK_FIELD.encode())
                if payload is not None:
                    orphans.append((entry_id, Task.decode(payload)))
        return Refreshed(lost=lost, orphans=orphans)

    async def dead_consumers(self) -> list[str]:
        """Group members with pending entries whose heartbeat proves them dead."""
        try:
            members: Any = await self.redis.xinfo_consumers(self.keys.tasks, CONSUMER_GROUP)
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                return []  # nothing to take over yet; the claim loop reports a reset
            raise
        beats: dict[bytes, bytes] = await self.redis.hgetall(self.keys.consumers)
        now = time.time()
        dead = []
        for member in members:
            name = _text(member["name"])
            if name == self.me or int(member["pending"]) == 0:
                continue
            raw = beats.get(name.encode())
            if raw is None:
                # Never beat (or its record is gone): dead once the group has
                # not heard from it for as long as a heartbeat may be late.
                if int(member["idle"]) >= self.dead_after_s * 1000:
                    dead.append(name)
                continue
            beat = orjson.loads(raw)
            if beat.get("dead") or now - float(beat.get("ts", 0)) > self.dead_after_s:
                dead.append(name)
        return dead

    async def take_over(self, count: int) -> Takeover:
        """Claim up to ``count`` entries of dead consumers, at once."""
        entries: list[tuple[Entry, int]] = []
        taken_from: list[str] = []
        for name in await self.dead_consumers():
            if len(entries) >= count:
                break
            pending: Any = await self.redis.xpending_range(
                self.keys.tasks, CONSUMER_GROUP, min="-", max="+", count=count - len(entries), consumername=name
            )
            if not pending:
                continue
            deliveries = {item["message_id"]: int(item["times_delivered"]) for item in pending}
            # min idle 1 s: of two consumers taking over the same entries at
            # once, the second finds them fresh (the first XCLAIM reset them).
            claimed: Any = await self.redis.xclaim(
                self.keys.tasks, CONSUMER_GROUP, self.me, min_idle_time=1000, message_ids=list(deliveries)
            )
            for entry_id, fields in claimed:
                if not fields:  # deleted under us (settled by its owner just before it died)
                    continue
                task = Task.decode(fields[TASK_FIELD.encode()])
                entries.append(((entry_id, task), deliveries.get(entry_id, 0) + 1))
            taken_from.append(name)
        return Takeover(entries=entries, dead=taken_from)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
