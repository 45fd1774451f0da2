"""Mode `processes`: multiprocessing.Pool + requests, each process writing its own output.

The seed's process pattern done as one would for speed: ``--pool-size``
processes (default 32: a blocking process serves one request at a time, so
fewer would leave it latency-bound), one ``requests.Session`` each. The parent
keeps the frontier and hands each page URL to the pool with ``apply_async``;
a pool process fetches, parses and appends the page's lines to its own shard
file, and returns only the page's follow-up URLs. At the end the parent joins
the shards into the output (timed). ``processes-via-parent`` is the variant
that sends every page's lines back through the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
import time

import _crawl
import requests

_session: requests.Session | None = None
_shard: int | None = None


def init(shard_dir: str) -> None:
    global _session, _shard  # noqa: PLW0603 - one Session and one shard per pool process
    _session = requests.Session()
    # Unbuffered appends: a pool process may be stopped at any moment, and one
    # write per page costs microseconds next to a blocking request.
    _shard = os.open(os.path.join(shard_dir, f"{os.getpid()}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def fetch_parse(base: str, url: str) -> tuple[list[str], str | None]:
    assert _session is not None and _shard is not None
    try:
        response = _session.get(url, timeout=30)
        response.raise_for_status()
        lines, followups = _crawl.parse_page(base, url, response.content)
        os.write(_shard, lines)
        return followups, None
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        return [], f"{url}: {exc!r}"


def main() -> None:
    args = _crawl.arguments(__doc__, pool_size=(int, 32, "pool processes"))
    started = time.perf_counter()
    state = {"outstanding": 0, "pages": 0, "errors": 0}
    done = threading.Event()
    lock = threading.Lock()
    shard_dir = tempfile.mkdtemp(prefix="shards-", dir=os.path.dirname(args.output))
    pool = multiprocessing.Pool(args.pool_size, initializer=init, initargs=(shard_dir,))

    def submit(url: str) -> None:
        with lock:
            state["outstanding"] += 1
        pool.apply_async(fetch_parse, (args.base_url, url), callback=finished)

    def finished(result: tuple[list[str], str | None]) -> None:
        # Runs in the pool's result thread, one result at a time.
        followups, error = result
        if error:
            state["errors"] += 1
            print(f"processes: {error}")
        else:
            state["pages"] += 1
        for url in followups:
            submit(url)
        with lock:
            state["outstanding"] -= 1
            if state["outstanding"] == 0:
                done.set()

    seeds = _crawl.seed_urls(args.base_url, args.aids)
    with lock:  # the result thread may finish a page before all seeds are in: count them first
        state["outstanding"] += 1
    for url in seeds:
        submit(url)
    with lock:
        state["outstanding"] -= 1
        if state["outstanding"] == 0:
            done.set()
    done.wait()
    fetch_s = time.perf_counter() - started
    pool.close()
    pool.join()
    with open(args.output, "wb") as out:
        for name in sorted(os.listdir(shard_dir)):
            with open(os.path.join(shard_dir, name), "rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    shutil.rmtree(shard_dir, ignore_errors=True)
    _crawl.report(state["pages"], started, errors=state["errors"], pool_size=args.pool_size, fetch_s=round(fetch_s, 4))


if __name__ == "__main__":
    main()
