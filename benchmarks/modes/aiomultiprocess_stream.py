"""Mode `aiomultiprocess-stream` (a labelled ANTI-PATTERN): ``async for r in Pool().map(...)``.

Kept to show what it costs, not as aiomultiprocess's figure (mode
`aiomultiprocess` is): iterating ``pool.map`` result by result asks the pool
for each result on its own, and each of those waits polls with a 5 ms sleep,
so the crawl runs at about 200 results a second whatever the machine; and
``aiohttp.request`` opens a new connection per page. The shape: a default Pool
(one process per core, 16 coroutines each), ``async for result in
pool.map(fetch_page, urls)``, ``aiohttp.request`` per call. ``map`` cannot fan
out (a result cannot add work to the running map), so this mode is given the
precomputed list of every page URL (``corpus.page_urls()``) instead of
discovering pages; its lines travel back through the parent, which writes them.
"""

from __future__ import annotations

import asyncio
import time

import _crawl
import aiohttp
from aiomultiprocess import Pool


async def fetch_page(job: tuple[str, str]) -> bytes:
    base, url = job
    async with aiohttp.request("GET", url, timeout=aiohttp.ClientTimeout(total=30)) as response:
        response.raise_for_status()
        body = await response.read()
    lines, _ = _crawl.parse_page(base, url, body, follow=False)
    return lines


async def crawl(args, urls: list[str]) -> int:  # noqa: ANN001
    pages = 0
    with open(args.output, "wb", buffering=1 << 20) as out:
        async with Pool() as pool:
            async for lines in pool.map(fetch_page, [(args.base_url, url) for url in urls]):
                out.write(lines)
                pages += 1
    return pages


def main() -> None:
    args = _crawl.arguments(__doc__)
    urls = _crawl.read_urls(args.urls)
    started = time.perf_counter()
    pages = asyncio.run(crawl(args, urls))
    _crawl.report(pages, started, errors=0)


if __name__ == "__main__":
    main()
