"""Redis at rest after a real crawl: at most 16 bytes per page crawled, and at most
8 Redis commands per page on the way (the settle script's included).

A user runs `scraper coordinate` and `scraper work --burst` against the
simulator and a private redis-server; afterwards every key left in Redis is
weighed with MEMORY USAGE. The target's fixed structures (the rate ring, the
counters, meta, the consumer table, the limiter of the host) do not grow with
the crawl and are bounded on their own; everything else is divided by the
pages crawled.
"""

from __future__ import annotations

from pathlib import Path

import redis

from scraper.simulator.corpus import Corpus
from tests.helpers import cli_env, coordinate, run_cli, simulator, stats_json

SEED, VIDEOS, COMMENTS = 21, 40, 120_000
BYTES_PER_PAGE = 16
# Every command the server ran, scripts' inner calls included, per page: XACK and XADD
# are one each; the settle script reads and writes each video's counters once per call,
# not once per page (issue 15: 15 a page before, under 4 after).
COMMANDS_PER_PAGE = 8
SESSION = "memory-session"  # the simulator's accepted SESSDATA: logged in, every comment is served
FIXED_SUFFIXES = (":rate", ":stats", ":meta", ":consumers")  # per target, whatever the crawl's length
FIXED_MAX_BYTES = 32 * 1024  # each


def _weigh(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    try:
        return {key.decode(): int(client.memory_usage(key, samples=0) or 0) for key in client.scan_iter(count=1000)}
    finally:
        client.close()


def test_redis_keeps_at_most_16_bytes_per_page(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    videos = tmp_path / "videos.txt"
    common = ["--target", "video-list", "--redis-url", redis_url]
    sim_args = ["--seed", str(SEED), "--videos", str(VIDEOS), "--comments", str(COMMENTS)]
    sim_args += ["--session", SESSION, "--write-videos", str(videos)]
    admin = redis.Redis.from_url(redis_url)
    admin.config_resetstat()  # the session's server: count this crawl's commands only
    with simulator(env, *sim_args) as base_url:
        coordinate(env, common, videos, base_url)
        work = run_cli(["work", *common, "--processes", "1", "--concurrency", "64", "--burst",
                        "--output-dir", str(tmp_path / "out"), "--rate-limit", "0"], env, timeout=300)  # fmt: skip
        assert work.returncode == 0, work.stderr
    calls = {name: int(row["calls"]) for name, row in admin.info("commandstats").items()}
    admin.close()
    stats = stats_json(redis_url, env)
    # every comment a complete crawl returns (pinned ones in, a deleted root's replies out)
    reachable = Corpus.generate(seed=SEED, videos=VIDEOS, comments=COMMENTS).all_rpids()
    assert stats["done"] and stats["comments"] >= len(reachable)
    pages = stats["pages_done"] + sum(stats["final"].values())
    assert pages > 5_000  # enough pages that a per-page cost cannot hide in a fixed one

    sizes = _weigh(redis_url)
    fixed = {key: size for key, size in sizes.items() if key.endswith(FIXED_SUFFIXES) or ":ratelimit:" in key}
    assert all(size <= FIXED_MAX_BYTES for size in fixed.values()), fixed
    growing = {key: size for key, size in sizes.items() if key not in fixed}
    per_page = sum(growing.values()) / pages
    assert per_page <= BYTES_PER_PAGE, f"{per_page:.1f} B per page over {pages} pages: {growing}"

    # Scripts are counted by their inner calls; the script calls themselves are per batch.
    commands = sum(n for name, n in calls.items() if name not in ("cmdstat_eval", "cmdstat_evalsha"))
    assert commands / pages <= COMMANDS_PER_PAGE, f"{commands / pages:.1f} commands per page: {calls}"
