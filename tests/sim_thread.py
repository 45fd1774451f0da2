"""The bundled simulator in its real-service mode, served from a thread of the test process.

Tests hand it an exact corpus and options (session, key rotation), read its
per-endpoint counts directly, and crawl it with the real ``scraper`` command.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Event, Thread
from typing import Any

from scraper.simulator.app import RunningSimulator, start_simulator
from scraper.simulator.corpus import Corpus
from scraper.simulator.options import SimulatorOptions


@contextmanager
def served(corpus: Corpus, options: SimulatorOptions) -> Iterator[RunningSimulator]:
    loop = asyncio.new_event_loop()
    running = loop.run_until_complete(start_simulator(options, corpus=corpus))
    thread = Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.run_until_complete(running.close())
        loop.close()


def stats(running: RunningSimulator) -> dict[str, Any]:
    return running.stats()


@contextmanager
def rotating_keys(running: RunningSimulator, every_s: float) -> Iterator[list[int]]:
    """POST /_sim/rotate every ``every_s`` while the block runs; yields the growing list of rotations."""
    done: list[int] = []
    stop = Event()

    def loop() -> None:
        while not stop.wait(every_s):
            urllib.request.urlopen(urllib.request.Request(f"{running.url}/_sim/rotate", method="POST"), timeout=5)
            done.append(1)

    thread = Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=10)


def endpoint_requests(running: RunningSimulator, path: str) -> int:
    return int(running.stats()["by_endpoint"].get(path, {}).get("requests", 0))


def write_video_list(corpus: Corpus, path: Path) -> Path:
    path.write_text("".join(f"av{video.aid}\n" for video in corpus.videos))
    return path
