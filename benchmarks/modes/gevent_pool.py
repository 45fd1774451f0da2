"""Mode `gevent`: monkey-patched requests in a gevent Pool.

``gevent.monkey.patch_all()`` first; ``--size`` (256) greenlets spawned in a
``gevent.pool.Pool`` pull URLs from a ``JoinableQueue``, fetch them with one
shared ``requests.Session`` (its connection pool sized to the greenlets),
write the page's lines and queue its follow-ups; ``queue.join()`` ends the
crawl. (Spawning one greenlet per follow-up from inside the pool would
deadlock once the pool is full: hence the worker pattern.)
"""

from gevent import monkey

monkey.patch_all()

import time  # noqa: E402

import _crawl  # noqa: E402
import gevent.pool  # noqa: E402
import gevent.queue  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402


def main() -> None:
    args = _crawl.arguments(__doc__, size=(int, 256, "greenlets"))
    started = time.perf_counter()
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=args.size))
    queue = gevent.queue.JoinableQueue()
    for url in _crawl.seed_urls(args.base_url, args.aids):
        queue.put(url)
    counts = {"pages": 0, "errors": 0}
    with open(args.output, "wb", buffering=1 << 20) as out:

        def worker() -> None:
            while True:
                url = queue.get()
                try:
                    response = session.get(url, timeout=30)
                    response.raise_for_status()
                    lines, followups = _crawl.parse_page(args.base_url, url, response.content)
                    out.write(lines)
                    counts["pages"] += 1
                    for follow in followups:
                        queue.put(follow)
                except Exception as exc:  # noqa: BLE001 - counted; the corpus check reports the gap
                    counts["errors"] += 1
                    print(f"gevent: {url}: {exc!r}")
                finally:
                    queue.task_done()

        pool = gevent.pool.Pool(args.size)
        for _ in range(args.size):
            pool.spawn(worker)
        queue.join()
        pool.kill()
    _crawl.report(counts["pages"], started, errors=counts["errors"])


if __name__ == "__main__":
    main()
