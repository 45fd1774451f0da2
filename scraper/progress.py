"""Progress where people wait: a bar on a terminal, a plain line elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any, TextIO

import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.stats import read_stats

BAR_WIDTH = 30
PLAIN_INTERVAL_S = 5.0


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(stats: dict[str, Any], *, bar: bool) -> str:
    known = max(stats["pages_known"], 1)
    settled = stats["pages_known"] - stats["pages_remaining"]
    fraction = min(settled / known, 1.0)
    rate = stats["pages_per_s_10s"]
    text = (
        f"{settled}/{stats['pages_known']} pages  {stats['comments']} comments  "
        f"{rate:.0f} pages/s  queued {stats['queued']}  in flight {stats['in_flight']}  "
        f"retries {stats['retries']}  dead {stats['dead']}  ETA {format_eta(stats['eta_s'])}"
    )
    if stats.get("waiting_for"):
        text += f"  waiting for {', '.join(stats['waiting_for'])}"
    if not bar:
        return f"progress: {fraction:6.1%} {text}"
    filled = int(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:6.1%} {text}"


async def show_progress(
    client: aioredis.Redis, keys: TargetKeys, stop: asyncio.Event, stream: TextIO | None = None
) -> None:
    out = stream or sys.stderr
    tty = out.isatty()
    interval = 0.5 if tty else PLAIN_INTERVAL_S
    last_plain = 0.0
    while True:
        try:
            stats = await read_stats(client, keys)
        except (OSError, aioredis.ConnectionError):
            stats = None
        finished = stop.is_set()
        if stats is not None:
            if tty:
                out.write("\r\x1b[K" + progress_line(stats, bar=True))
                if finished:
                    out.write("\n")
                out.flush()
            elif finished or time.monotonic() - last_plain >= PLAIN_INTERVAL_S:
                last_plain = time.monotonic()
                out.write(progress_line(stats, bar=False) + "\n")
                out.flush()
        if finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
