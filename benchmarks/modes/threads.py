"""Mode `threads`: requests, one Session per thread, a ThreadPoolExecutor of 64.

Each task fetches one page, parses it, writes its lines under a lock and
submits the page's follow-ups to the same executor; the main thread waits for
the count of outstanding pages to reach zero.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import _crawl
import requests

args = _crawl.arguments(__doc__, threads=(int, 64, "worker threads"))
local = threading.local()
lock = threading.Lock()
done = threading.Event()
state = {"outstanding": 0, "pages": 0, "errors": 0}
out = open(args.output, "wb", buffering=1 << 20)  # noqa: SIM115 - closed at the end
pool = ThreadPoolExecutor(max_workers=args.threads)


def session() -> requests.Session:
    s = getattr(local, "session", None)
    if s is None:
        s = local.session = requests.Session()
    return s


def submit(urls: list[str]) -> None:
    with lock:
        state["outstanding"] += len(urls)
    for url in urls:
        pool.submit(task, url)


def task(url: str) -> None:
    followups: list[str] = []
    try:
        response = session().get(url, timeout=30)
        response.raise_for_status()
        lines, followups = _crawl.parse_page(args.base_url, url, response.content)
        with lock:
            out.write(lines)
            state["pages"] += 1
    except Exception as exc:  # noqa: BLE001 - counted; the check against the corpus reports the gap
        with lock:
            state["errors"] += 1
        print(f"threads: {url}: {exc!r}")
    submit(followups)
    with lock:
        state["outstanding"] -= 1
        if state["outstanding"] == 0:
            done.set()


started = time.perf_counter()
seeds = _crawl.seed_urls(args.base_url, args.aids)
if seeds:
    submit(seeds)
    done.wait()
pool.shutdown()
out.close()
_crawl.report(state["pages"], started, errors=state["errors"])
