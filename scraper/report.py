"""`scraper report`: per video of the list, did the crawl get every comment?

Reads the completeness ledger (scraper.ledger) from Redis alone. Exit code 0
when every video is complete, closed or deleted; 3 when any is incomplete or
still pending (``run`` ends with the same summary and code).
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.ledger import STATUSES, VideoState, exit_code, read_videos, summarize

INCOMPLETE_EXIT = 3


async def build_report(client: aioredis.Redis, keys: TargetKeys) -> tuple[dict[str, Any], int]:
    """The ``--json`` document and the exit code."""
    states = await read_videos(client, keys)
    document = {"videos": [s.as_dict() for s in states], "summary": summarize(states)}
    return document, exit_code(states)


def render_summary(summary: dict[str, int]) -> str:
    total = sum(summary.values())
    parts = [f"{summary.get(status, 0)} {status}" for status in STATUSES if summary.get(status, 0)]
    return f"{total} videos: " + (", ".join(parts) if parts else "none")


def render_table(states: list[VideoState]) -> str:
    lines = [f"{'bvid':<14} {'status':<11} {'expected':>9} {'fetched':>9} {'refreshed (UTC)':<16} {'new':>6}  reason"]
    for s in states:
        expected = f"{s.expected:,}" if s.expected is not None else "-"
        refreshed = time.strftime("%Y-%m-%d %H:%M", time.gmtime(s.refreshed_at)) if s.refreshed_at else "never"
        new = f"{s.new:,}" if s.new is not None else "-"
        lines.append(f"{s.bvid:<14} {s.status:<11} {expected:>9} {s.fetched:>9,} {refreshed:<16} {new:>6}  {s.reason}")
    return "\n".join(lines)


def render(document: dict[str, Any]) -> str:
    states = [VideoState(**row) for row in document["videos"]]
    return f"{render_table(states)}\n{render_summary(document['summary'])}"
