"""Mode `aiomultiprocess`: ``aiomultiprocess.Pool`` the way its authors mean it, ``await pool.map(...)``.

``Pool(processes=P, childconcurrency=C, loop_initializer=uvloop.new_event_loop)``:
P children, each running up to C tasks at once in one event loop, with one
aiohttp session per child (made by the child's first task and kept: every
task of a child runs in the same loop). A task fetches one page, appends its
lines to the child's own shard (one write per page: the pool stops its
children without a chance to flush a buffer), and returns only the page's
follow-up URLs, so no page travels through the parent. ``map`` cannot add
work while it runs, so the crawl goes in waves: ``await pool.map(fetch,
urls)`` over page 1 of every video, then over the follow-ups those returned,
and so on until none are left. The parent joins the shards (timed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time

import _crawl
import aiohttp
import uvloop
from aiomultiprocess import Pool

_session: aiohttp.ClientSession | None = None
_shard: int | None = None


async def fetch(job: tuple[str, str, str, int]) -> list[str]:
    global _session, _shard  # noqa: PLW0603 - one session and one shard per child process
    base, url, shard_dir, limit = job
    if _session is None:
        connector = aiohttp.TCPConnector(limit=limit)
        _session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
        path = os.path.join(shard_dir, f"{os.getpid()}.jsonl")
        _shard = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    assert _shard is not None
    async with _session.get(url) as response:
        response.raise_for_status()
        body = await response.read()
    lines, followups = _crawl.parse_page(base, url, body)
    os.write(_shard, lines)
    return followups


async def crawl(args, shard_dir: str) -> tuple[int, int]:  # noqa: ANN001
    pages = waves = 0
    urls = _crawl.seed_urls(args.base_url, args.aids)
    async with Pool(
        processes=args.processes, childconcurrency=args.concurrency, loop_initializer=uvloop.new_event_loop
    ) as pool:
        while urls:
            jobs = [(args.base_url, url, shard_dir, args.concurrency) for url in urls]
            results = await pool.map(fetch, jobs)
            pages += len(jobs)
            waves += 1
            urls = [url for followups in results for url in followups]
    return pages, waves


def main() -> None:
    args = _crawl.arguments(
        __doc__,
        processes=(int, 2, "pool processes (the scraper's --processes)"),
        concurrency=(int, 128, "childconcurrency: tasks at once per child (the scraper's --concurrency)"),
    )
    started = time.perf_counter()
    shard_dir = tempfile.mkdtemp(prefix="shards-", dir=os.path.dirname(args.output))
    pages, waves = asyncio.run(crawl(args, shard_dir))
    fetch_s = time.perf_counter() - started
    with open(args.output, "wb") as out:
        for name in sorted(os.listdir(shard_dir)):
            with open(os.path.join(shard_dir, name), "rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    shutil.rmtree(shard_dir, ignore_errors=True)
    _crawl.report(pages, started, errors=0, waves=waves, processes=args.processes, fetch_s=round(fetch_s, 4))


if __name__ == "__main__":
    main()
