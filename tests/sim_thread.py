"""The bundled simulator in its real-service mode, served from a thread of the test process.

Tests hand it an exact corpus and options (session, key rotation), read its
per-endpoint counts directly, and crawl it with the real ``scraper`` command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Thread
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


def endpoint_requests(running: RunningSimulator, path: str) -> int:
    return int(running.stats()["by_endpoint"].get(path, {}).get("requests", 0))


def write_video_list(corpus: Corpus, path: Path) -> Path:
    path.write_text("".join(f"av{video.aid}\n" for video in corpus.videos))
    return path
