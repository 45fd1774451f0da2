"""Refresh crawls: per video, fetch only what is new since its last complete crawl.

A complete crawl leaves in the video's ledger (``scraper.ledger``) its
watermark ``wm``, the newest rpid it saw (rpids only grow on the service, so
every comment posted later has a larger one), and in
``<prefix>:{T}:rcounts:<aid>`` the rcount each thread was fetched for. A
refresh seeds the first cursor page (newest first) with ``since = wm``:

- the chain stops on the first page that lists a root at or below the
  watermark (a deep refresh walks on to the end);
- every known root seen (the pinned one included) is rechecked by the settle
  script: when its rcount grew, only its thread's pages past the known replies
  are fetched;
- records at or below the watermark refresh their copy (likes change) but do
  not count as new; the ledger's ``fetched`` grows by the new ones only, so
  "complete" still means known + new reaches what the service announces; the
  ``complete_ratio`` tolerance does not apply to a refresh (2% new comments
  all missed would pass it): the video may fall short of ``all_count`` by no
  more than its last complete crawl did (``slack``).

A video with no watermark (never complete, or not seen before) gets a full
crawl. A refresh is refused while anything of the target is queued, in
flight or delayed: two crawls of one video would count its pages twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from scraper.errors import UserError
from scraper.keys import TASK_FIELD, TargetKeys
from scraper.queue_counts import read_counts
from scraper.tasks import Task

# KEYS: videos (zset), tasks, stats, then (ledger hash, rcounts string) per video.
# ARGV: task field, deep flag, then (position, oid, bvid, full task, refresh task) per video;
# the refresh task carries "since":-1, replaced here by the video's watermark.
REFRESH_LUA = """
local full, refreshed = 0, 0
local deep = ARGV[2]
for i = 3, #ARGV, 5 do
  local j = (i - 3) / 5
  local L, R = KEYS[4 + 2 * j], KEYS[5 + 2 * j]
  redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1])
  local wm = redis.call('HGET', L, 'wm')
  local task
  if wm then
    task = string.gsub(ARGV[i + 4], '"since":%-1', '"since":' .. wm)
    -- back to what was known at the watermark (a refresh that fell short may have counted
    -- comments above it already); the shortfall the last complete crawl was allowed
    -- (complete_ratio) and no more: every comment announced beyond it must be found
    local n = redis.call('HGET', L, 'wm_n') or redis.call('HGET', L, 'fetched') or '0'
    local slack = redis.call('HGET', L, 'wm_gap') or '0'
    redis.call('HDEL', L, 'expected', 'reason', 'detail', 'end', 'final')
    redis.call('HSET', L, 'open', 1, 'status', 'pending', 'new', 0, 'since', wm, 'rf', deep, 'slack', slack,
               'fetched', n)
    refreshed = refreshed + 1
  else
    -- never complete: start again from nothing (what was written stays in the shards)
    task = ARGV[i + 3]
    redis.call('DEL', L, R)
    redis.call('HSET', L, 'bvid', ARGV[i + 2], 'open', 1, 'status', 'pending')
    full = full + 1
  end
  redis.call('XADD', KEYS[2], '*', ARGV[1], task)
end
redis.call('HINCRBY', KEYS[3], 'pages_known', full + refreshed)
return {full, refreshed}
"""


@dataclass(frozen=True, slots=True)
class RefreshSeeded:
    full: int  # videos crawled from scratch (new to the list, or never complete)
    refreshed: int  # videos refreshed from their watermark


async def refuse_if_running(client: aioredis.Redis, keys: TargetKeys) -> None:
    """A UserError (one line, exit 2) while anything of the target is queued, in flight or delayed."""
    counts = await read_counts(client, keys)
    if counts.queued or counts.in_flight or counts.delayed:
        raise UserError(
            f"refusing to refresh {keys.target}: a crawl is still running "
            f"({counts.queued} queued, {counts.in_flight} in flight, {counts.delayed} delayed); "
            "let it finish (scraper work --burst) or clear it (scraper reset)"
        )


async def seed_refresh(
    client: aioredis.Redis, keys: TargetKeys, tasks: list[Task], *, deep: bool, chain_kind: str = ""
) -> RefreshSeeded:
    """Seed the first page of every video: from its watermark if it has one, from scratch otherwise.

    ``chain_kind``: the kind of page a refresh starts from when it differs from a
    full crawl's (auto paging crawls by page number, refreshes newest first by cursor).
    """
    full = refreshed = 0
    chunk = 200  # bound one script's run time: it blocks the server
    position = int(await client.zcard(keys.videos))
    for start in range(0, len(tasks), chunk):
        part = tasks[start : start + chunk]
        script_keys: list[str] = [keys.videos, keys.tasks, keys.stats]
        args: list[Any] = [TASK_FIELD, 1 if deep else 0]
        for offset, task in enumerate(part):
            script_keys += [keys.video(task.oid), keys.rcounts(task.oid)]
            template = Task(
                kind=chain_kind or task.kind,
                oid=task.oid,
                page=1,
                bvid=task.bvid,
                first_seen_ms=task.first_seen_ms,
                since=-1,
            ).to_dict()
            template["deep"] = 1 if deep else 0
            args += [position + start + offset, task.oid, task.bvid, task.encode(), orjson.dumps(template)]
        added_full, added_refreshed = await client.eval(REFRESH_LUA, len(script_keys), *script_keys, *args)
        full += int(added_full)
        refreshed += int(added_refreshed)
    return RefreshSeeded(full, refreshed)
