"""Text views of the stats: a summary, a target list, and the live `--watch` dashboard."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any, TextIO

import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.progress import format_eta
from scraper.stats import read_stats

SPARK = " ▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(int(v / top * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in values)


def render_stats(stats: dict[str, Any], history: list[float] | None = None) -> str:
    lines = [
        f"target {stats['target']}"
        + (f"  {stats['mode']}" if stats.get("mode", "crawl") != "crawl" else "")  # a refresh counts from its start
        + ("  (done)" if stats["done"] else ""),
        f"  queue     queued {stats['queued']}  in flight {stats['in_flight']}  "
        f"delayed {stats['delayed']}  dead {stats['dead']}",
        f"  progress  pages {stats['pages_done']} done of {stats['pages_known']} known  "
        f"comments {stats['comments']}  ETA {format_eta(stats['eta_s'])}",
        f"  speed     {stats['pages_per_s_10s']:.1f} pages/s (10s)  {stats['pages_per_s_60s']:.1f} pages/s (1m)  "
        f"{stats['comments_per_s_10s']:.0f} comments/s (10s)",
        f"  failures  retries {stats['retries']} {_pairs(stats['retries_by_reason'])}  bans {stats['bans']}  "
        # final pages (closed, deleted, depth cap) only when there are some: an empty field reads as a bug
        + (f"final {_pairs(stats['final'])}  " if stats["final"] else "")
        + f"reclaimed {stats['reclaimed']}",
    ]
    if stats.get("videos"):
        lines.append("  videos    " + "  ".join(f"{k} {v}" for k, v in stats["videos"].items()))
    limiter = stats.get("rate_limit")
    if limiter and limiter.get("configured_rate"):  # the workers really use a shared limit
        lines.append(
            f"  limiter   {limiter.get('effective_rate', 0):.2f}/{limiter.get('configured_rate', 0):.2f} req/s  "
            f"cooldown {limiter.get('cooldown_remaining_s', 0):.1f}s"
        )
    if history is not None:
        lines.append(f"  pages/s   {sparkline(history)}")
    lines.append(f"  consumers {len(stats['consumers'])}")
    for consumer in stats["consumers"]:
        lines.append(
            f"    {consumer['name']:<36} pending {consumer['pending']:>4}  idle {consumer['idle_s']:>6.1f}s  "
            f"heartbeat {consumer['heartbeat_age_s']:>5.1f}s ago  pages {consumer['pages_done']}"
        )
    return "\n".join(lines)


def _pairs(mapping: dict[str, int]) -> str:
    return "(" + ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) + ")" if mapping else ""


def render_targets(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no targets in this Redis yet (run `scraper coordinate --target NAME`)"
    lines = [
        f"{'target':<20} {'queued':>8} {'in_flight':>9} {'delayed':>8} {'dead':>6} {'pages':>9} {'comments':>10}  state"
    ]
    for row in rows:
        lines.append(
            f"{row['target']:<20} {row['queued']:>8} {row['in_flight']:>9} {row['delayed']:>8} {row['dead']:>6} "
            f"{row['pages_done']:>9} {row['comments']:>10}  {'done' if row['done'] else 'running'}"
        )
    return "\n".join(lines)


async def watch(
    client: aioredis.Redis,
    keys: TargetKeys,
    *,
    limiter_host: str | None = None,
    frames: int = 0,
    stream: TextIO | None = None,
    interval_s: float = 1.0,
) -> None:
    """Redraw every second until interrupted (or after ``frames`` frames)."""
    out = stream or sys.stdout
    history: deque[float] = deque(maxlen=SPARK_WIDTH)
    shown = 0
    while True:
        stats = await read_stats(client, keys, limiter_host=limiter_host)
        history.append(stats["pages_per_s_10s"])
        frame = render_stats(stats, list(history))
        if out.isatty():
            out.write("\x1b[H\x1b[2J")
        out.write(frame + "\n")
        out.flush()
        shown += 1
        if frames and shown >= frames:
            return
        await asyncio.sleep(interval_s)
