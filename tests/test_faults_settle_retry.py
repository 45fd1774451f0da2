"""A settle whose reply never arrives: the connection drops between EXEC and its reply.

The worker cannot know whether the batch was applied; it sends it again. Each
batch must be applied at most once (issue 12, finding 7): counters, dead
letters and final records counted once, the export exact.

A tiny TCP proxy between the workers and redis-server forwards everything; a
few times during the crawl it lets a settle (the request that bumps the stats
counters: MULTI..EXEC or a script call) reach Redis, swallows Redis's reply
and closes the client's connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port
from tests.faults_support import crawl
from tests.helpers import assert_exported_exactly, run_cli, stats_json

STATS_KEY = b"{video-list}:stats"


class DroppingProxy:
    """127.0.0.1:port -> redis; drops the reply of the ``drops`` settles it lets through."""

    def __init__(self, redis_port: int, *, drops: int, every: int) -> None:
        self.redis_port = redis_port
        self.port = free_port()
        self.drops_left = drops
        self.every = every  # drop one settle reply in this many
        self.seen = 0
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def _is_settle(self, chunk: bytes) -> bool:
        return STATS_KEY in chunk and (b"EXEC" in chunk or b"EVAL" in chunk.upper())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        drop = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self._is_settle(data):
                    self.seen += 1
                    if self.drops_left > 0 and self.seen % self.every == 0:
                        self.drops_left -= 1
                        drop.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if drop.is_set():  # the settle ran; its reply goes nowhere, and the line drops
                    self.dropped += 1
                    writer.transport.abort()
                    up_writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        writer.transport.abort()
        up_writer.transport.abort()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def dropping_proxy(redis_url: str, *, drops: int, every: int) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]), drops=drops, every=every)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_settle_with_lost_reply_is_applied_once(tmp_path: Path, redis_url: str) -> None:
    with (
        crawl(tmp_path, redis_url, seed=71, videos=12, comments=12000, sim=("--latency-ms", "20")) as c,
        dropping_proxy(redis_url, drops=5, every=7) as proxy,
    ):
        via_proxy = [*c.common[:-1], f"redis://127.0.0.1:{proxy.port}/0"]
        work = run_cli(["work", *via_proxy, "--processes", "2", "--concurrency", "16", "--rate-limit", "0",
                        "--burst", "--output-dir", str(c.out)], c.env, timeout=300)  # fmt: skip
        assert work.returncode == 0, work.stderr
        assert proxy.dropped >= 3, f"only {proxy.dropped} settle replies dropped"
    final = stats_json(redis_url, c.env)
    exported = assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)
    assert final["comments"] == len(c.expected)  # counted once, though some settles were sent twice
    settled = final["pages_done"] + sum(final["final"].values()) + final["dead"]
    assert settled == final["pages_known"]
    assert (final["queued"], final["in_flight"], final["delayed"]) == (0, 0, 0)
    assert "0 duplicates removed" in exported.stdout or final["reclaimed"] > 0
