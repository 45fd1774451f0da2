"""`scraper coordinate`: video list -> first comment page of every video -> Redis.

Workers fan out the rest (next cursor pages, sub-reply pages) as they parse
each page, so the coordinator's work is small and idempotent: a video whose
completeness ledger exists was seeded before, and a second run enqueues
nothing for it. ``refresh=True`` seeds every video again from its watermark
(only what is new since its last complete crawl: scraper.refresh).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.queue import TaskQueue
from scraper.refresh import refuse_if_running, seed_refresh
from scraper.settings import Settings
from scraper.stats import mark_new_crawl
from scraper.targets import load_adapter
from scraper.tasks import CURSOR
from scraper.videos import VideoList, read_video_list


@dataclass(frozen=True, slots=True)
class CoordinateSummary:
    videos: int
    lines: int
    duplicates: int
    enqueued: int
    refreshed: int = 0  # videos seeded from their watermark (the rest of ``enqueued`` crawl in full)


def load_videos(settings: Settings) -> VideoList:
    """Parse the whole list before touching Redis: a bad line enqueues nothing."""
    return read_video_list(settings.resolve(settings.target.videos))


async def coordinate(
    client: aioredis.Redis, settings: Settings, videos: VideoList, *, refresh: bool = False, deep: bool = False
) -> CoordinateSummary:
    """Seed the list; ``refresh`` raises UserError (exit 2) while a crawl of the target runs."""
    keys = TargetKeys(settings.target.name, settings.redis.key_prefix)
    queue = TaskQueue(client, keys)
    await queue.ensure_group()
    now = int(time.time() * 1000)
    tasks = [replace(task, first_seen_ms=now) for task in load_adapter(settings.target).seed_tasks(videos.videos)]
    refreshed = 0
    if refresh:
        await refuse_if_running(client, keys)
        await mark_new_crawl(client, keys, "deep refresh" if deep else "refresh")
        chain_kind = CURSOR if settings.target.root_paging == "auto" else ""
        seeded = await seed_refresh(client, keys, tasks, deep=deep, chain_kind=chain_kind)
        enqueued, refreshed = seeded.full + seeded.refreshed, seeded.refreshed
    else:
        enqueued = await queue.seed([(task, task.bvid) for task in tasks])
        await client.hsetnx(keys.meta, "started_at", time.time())
    await client.hset(
        keys.meta,
        mapping={
            "base_url": settings.target.base_url,
            "videos": len(videos.videos),
            "coordinated_at": time.time(),
        },
    )
    return CoordinateSummary(
        videos=len(videos.videos),
        lines=videos.lines_read,
        duplicates=videos.duplicates,
        enqueued=enqueued,
        refreshed=refreshed,
    )
