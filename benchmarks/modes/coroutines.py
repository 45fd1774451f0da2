"""Mode `coroutines`: one process, asyncio + aiohttp, a pool of worker coroutines.

The pattern most asyncio crawlers use: ``--workers`` coroutines (256) pull URLs
from an ``asyncio.Queue``, fetch through one ``ClientSession`` with
``TCPConnector(limit=256)``, write the page's lines and put its follow-ups
back on the queue; ``queue.join()`` ends the crawl. ``--loop asyncio`` (mode `coroutines`, the
standard loop, as the seed ran it) or ``--loop uvloop`` (mode
`coroutines-uvloop`, the loop the scraper and `bare` use).
"""

from __future__ import annotations

import asyncio
import time

import _crawl
import aiohttp


async def crawl(args) -> tuple[int, int]:  # noqa: ANN001
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in _crawl.seed_urls(args.base_url, args.aids):
        queue.put_nowait(url)
    counts = {"pages": 0, "errors": 0}
    with open(args.output, "wb", buffering=1 << 20) as out:
        connector = aiohttp.TCPConnector(limit=args.workers)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def worker() -> None:
                while True:
                    url = await queue.get()
                    try:
                        async with session.get(url) as response:
                            response.raise_for_status()
                            body = await response.read()
                        lines, followups = _crawl.parse_page(args.base_url, url, body)
                        out.write(lines)
                        counts["pages"] += 1
                        for follow in followups:
                            queue.put_nowait(follow)
                    except Exception as exc:  # noqa: BLE001 - counted; the corpus check reports the gap
                        counts["errors"] += 1
                        print(f"coroutines: {url}: {exc!r}")
                    finally:
                        queue.task_done()

            workers = [asyncio.create_task(worker()) for _ in range(args.workers)]
            await queue.join()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    return counts["pages"], counts["errors"]


def main() -> None:
    args = _crawl.arguments(
        __doc__,
        workers=(int, 256, "worker coroutines = connector limit"),
        loop=(str, "asyncio", "asyncio or uvloop"),
    )
    started = time.perf_counter()
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415

        pages, errors = uvloop.run(crawl(args))
    else:
        pages, errors = asyncio.run(crawl(args))
    _crawl.report(pages, started, errors=errors, loop=args.loop, workers=args.workers)


if __name__ == "__main__":
    main()
