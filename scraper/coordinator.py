"""`scraper coordinate`: video list -> first comment page of every video -> Redis.

Workers fan out the rest (next cursor pages, sub-reply pages) as they parse
each page, so the coordinator's work is small and idempotent: a video whose
completeness ledger exists was seeded before, and a second run enqueues
nothing for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.queue import TaskQueue
from scraper.settings import Settings
from scraper.targets import load_adapter
from scraper.videos import VideoList, read_video_list


@dataclass(frozen=True, slots=True)
class CoordinateSummary:
    videos: int
    lines: int
    duplicates: int
    enqueued: int


def load_videos(settings: Settings) -> VideoList:
    """Parse the whole list before touching Redis: a bad line enqueues nothing."""
    return read_video_list(settings.resolve(settings.target.videos))


async def coordinate(client: aioredis.Redis, settings: Settings, videos: VideoList) -> CoordinateSummary:
    keys = TargetKeys(settings.target.name, settings.redis.key_prefix)
    queue = TaskQueue(client, keys)
    await queue.ensure_group()
    now = int(time.time() * 1000)
    tasks = [replace(task, first_seen_ms=now) for task in load_adapter(settings.target).seed_tasks(videos.videos)]
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
        videos=len(videos.videos), lines=videos.lines_read, duplicates=videos.duplicates, enqueued=enqueued
    )
