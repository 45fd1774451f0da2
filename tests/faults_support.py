"""What the fault tests share: a simulator crawl set up in one call, its numbers."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from scraper.simulator.corpus import Corpus
from tests.helpers import cli_env, coordinate, simulator


@dataclass
class Crawl:
    env: dict[str, str]
    common: list[str]
    out: Path
    base_url: str
    expected: set[int]
    redis_url: str

    def sim_requests(self) -> int:
        """Comment-API requests the simulator answered (``/_sim/*`` is never counted)."""
        stats = orjson.loads(urllib.request.urlopen(f"{self.base_url}/_sim/stats", timeout=5).read())
        return int(stats["requests"])


@contextmanager
def crawl(tmp_path: Path, redis_url: str, *, seed: int, videos: int, comments: int, sim: tuple[str, ...] = ()
          ) -> Iterator[Crawl]:  # fmt: skip
    """A simulator with a known corpus, its videos enqueued by the coordinator."""
    env = cli_env(tmp_path)
    video_file = tmp_path / "videos.txt"
    common = ["--target", "video-list", "--redis-url", redis_url]
    args = ["--seed", str(seed), "--videos", str(videos), "--comments", str(comments), "--write-videos"]
    with simulator(env, *args, str(video_file), *sim) as base_url:
        corpus = Corpus.generate(seed=seed, videos=videos, comments=comments)
        coordinate(env, common, video_file, base_url)
        yield Crawl(env, common, tmp_path / "out", base_url, corpus.expected_rpids(), redis_url)
