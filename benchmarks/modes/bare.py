"""Mode `bare`: the practical upper bound of one Python process.

uvloop, one aiohttp session with ``TCPConnector(limit=256)``, 256 long-lived
worker coroutines over the precomputed list of every page URL of the crawl
(``corpus.page_urls()``: no discovery, no queue service, no retries), each
body parsed with orjson and written as the same JSON lines as every other mode
through one buffered file.
"""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp
import uvloop

import _crawl


async def crawl(args, urls: list[str]) -> tuple[int, int]:  # noqa: ANN001
    counts = {"pages": 0, "errors": 0}
    todo = iter(urls)
    with open(args.output, "wb", buffering=1 << 20) as out:
        connector = aiohttp.TCPConnector(limit=args.workers)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def worker() -> None:
                for url in todo:  # a shared iterator: each URL goes to exactly one worker
                    try:
                        async with session.get(url) as response:
                            response.raise_for_status()
                            body = await response.read()
                        lines, _ = _crawl.parse_page(args.base_url, url, body, follow=False)
                        out.write(lines)
                        counts["pages"] += 1
                    except Exception as exc:  # noqa: BLE001 - counted; the corpus check reports the gap
                        counts["errors"] += 1
                        print(f"bare: {url}: {exc!r}")

            await asyncio.gather(*(worker() for _ in range(args.workers)))
    return counts["pages"], counts["errors"]


def main() -> None:
    args = _crawl.arguments(__doc__, workers=(int, 256, "worker coroutines = connector limit"))
    urls = _crawl.read_urls(args.urls)
    started = time.perf_counter()
    gc.freeze()  # the same GC settings as the scraper's children (DESIGN.md): an upper bound
    gc.set_threshold(50_000, 20, 20)
    pages, errors = uvloop.run(crawl(args, urls))
    _crawl.report(pages, started, errors=errors)


if __name__ == "__main__":
    main()
