"""Mode `bare`: the oracle, at the scraper's process count and concurrency.

``--processes P`` (the scraper's) forked processes, each on uvloop with one
aiohttp session, ``TCPConnector(limit=C)`` and ``--workers C`` long-lived
worker coroutines (the scraper's concurrency per process) over its share of
the precomputed list of every page URL of the crawl (``corpus.page_urls()``:
no discovery, no queue service, no retries). Each body is parsed with orjson
and written as the same JSON lines as every other mode through one buffered
file per process; the parent joins the shards into the output file (timed:
every mode ends with its one output file). The same GC settings as the
scraper's children. Nothing real can do less per page: the upper bound.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import time

import _crawl
import aiohttp
import uvloop


async def crawl(base_url: str, urls: list[str], output: str, workers: int) -> tuple[int, int]:
    counts = {"pages": 0, "errors": 0}
    todo = iter(urls)
    with open(output, "wb", buffering=1 << 20) as out:
        connector = aiohttp.TCPConnector(limit=workers)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def worker() -> None:
                for url in todo:  # a shared iterator: each URL goes to exactly one worker
                    try:
                        async with session.get(url) as response:
                            response.raise_for_status()
                            body = await response.read()
                        lines, _ = _crawl.parse_page(base_url, url, body, follow=False)
                        out.write(lines)
                        counts["pages"] += 1
                    except Exception as exc:  # noqa: BLE001 - counted; the corpus check reports the gap
                        counts["errors"] += 1
                        print(f"bare: {url}: {exc!r}")

            await asyncio.gather(*(worker() for _ in range(workers)))
    return counts["pages"], counts["errors"]


def run_one(base_url: str, urls: list[str], output: str, workers: int) -> tuple[int, int]:
    gc.freeze()  # the scraper's children's GC settings (DESIGN.md)
    gc.set_threshold(50_000, 20, 20)
    return uvloop.run(crawl(base_url, urls, output, workers))


def main() -> None:
    args = _crawl.arguments(
        __doc__,
        workers=(int, 128, "worker coroutines per process = connector limit (the scraper's --concurrency)"),
        processes=(int, 2, "processes (the scraper's --processes)"),
    )
    urls = _crawl.read_urls(args.urls)
    started = time.perf_counter()
    if args.processes <= 1:
        pages, errors = run_one(args.base_url, urls, args.output, args.workers)
        _crawl.report(pages, started, errors=errors, processes=1, workers=args.workers)
        return
    # fork before any event loop exists: each child starts with everything imported.
    shards = [f"{args.output}.{i}" for i in range(args.processes)]
    pids = []
    for i, shard in enumerate(shards):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                pages, errors = run_one(args.base_url, urls[i :: args.processes], shard, args.workers)
                code = 0 if errors == 0 else 3
            except BaseException:  # noqa: BLE001 - the exit code tells the parent
                code = 1
            os._exit(code)
        pids.append(pid)
    failed = sum(1 for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0)
    crawl_s = time.perf_counter() - started
    with open(args.output, "wb") as out:
        for shard in shards:
            with open(shard, "rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
            os.unlink(shard)
    _crawl.report(
        len(urls) if not failed else 0,
        started,
        errors=failed,
        processes=args.processes,
        workers=args.workers,
        fetch_s=round(crawl_s, 4),
    )


if __name__ == "__main__":
    main()
