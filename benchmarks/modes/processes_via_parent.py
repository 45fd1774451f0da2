"""Mode `processes-via-parent` (labelled variant): multiprocessing.Pool + requests, every page through the parent.

The classic pattern: the parent keeps the frontier and hands each page URL to
the pool with ``apply_async``; a pool process fetches and parses the page and
returns (lines, follow-up URLs) to the parent, which writes the lines and
submits the follow-ups. ``--pool-size`` processes (default 32: a blocking
process serves one request at a time, so fewer would leave it latency-bound).
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import _crawl
import requests

_session: requests.Session | None = None


def fetch_parse(base: str, url: str) -> tuple[bytes, list[str], str | None]:
    global _session  # noqa: PLW0603 - one Session per pool process
    if _session is None:
        _session = requests.Session()
    try:
        response = _session.get(url, timeout=30)
        response.raise_for_status()
        lines, followups = _crawl.parse_page(base, url, response.content)
        return lines, followups, None
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        return b"", [], f"{url}: {exc!r}"


def main() -> None:
    args = _crawl.arguments(__doc__, pool_size=(int, 32, "pool processes"))
    started = time.perf_counter()
    state = {"outstanding": 0, "pages": 0, "errors": 0}
    done = threading.Event()
    lock = threading.Lock()
    with open(args.output, "wb", buffering=1 << 20) as out, multiprocessing.Pool(args.pool_size) as pool:

        def submit(url: str) -> None:
            with lock:
                state["outstanding"] += 1
            pool.apply_async(fetch_parse, (args.base_url, url), callback=finished)

        def finished(result: tuple[bytes, list[str], str | None]) -> None:
            # Runs in the pool's result thread, one result at a time.
            lines, followups, error = result
            if error:
                state["errors"] += 1
                print(f"processes: {error}")
            else:
                state["pages"] += 1
                out.write(lines)
            for url in followups:
                submit(url)
            with lock:
                state["outstanding"] -= 1
                if state["outstanding"] == 0:
                    done.set()

        seeds = _crawl.seed_urls(args.base_url, args.aids)
        # The result thread may finish a page before all seeds are in: count them first.
        with lock:
            state["outstanding"] += 1
        for url in seeds:
            submit(url)
        with lock:
            state["outstanding"] -= 1
            if state["outstanding"] == 0:
                done.set()
        done.wait()
    _crawl.report(state["pages"], started, errors=state["errors"], pool_size=args.pool_size)


if __name__ == "__main__":
    main()
