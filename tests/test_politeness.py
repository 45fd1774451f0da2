"""One rate limit shared by every process of every pod, adapting to bans."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import orjson

from scraper.simulator.corpus import Corpus
from tests.helpers import (
    assert_exported_exactly,
    cli_env,
    coordinate,
    run_cli,
    simulator,
    start_cli,
    stats_json,
)

SESSION = "test-session"  # the simulator accepts it as SESSDATA; the crawler sends it (issue 10)
COOKIE = f"SESSDATA={SESSION}"


def _sim_stats(base_url: str) -> dict:
    return orjson.loads(urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=5).read())


def test_two_pods_share_one_limit(tmp_path: Path, redis_url: str) -> None:
    limit = 25
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    videos, out = tmp_path / "videos.txt", tmp_path / "out"
    common = ["--target", "video-list", "--redis-url", redis_url]
    with simulator(
        env, "--session", SESSION, "--seed", "8", "--videos", "10", "--comments", "3000", "--write-videos", str(videos)
    ) as base_url:
        corpus = Corpus.generate(seed=8, videos=10, comments=3000)
        coordinate(env, common, videos, base_url)
        pods = [
            start_cli(
                [
                    "work",
                    *common,
                    "--processes",
                    "2",
                    "--concurrency",
                    "16",
                    "--rate-limit",
                    str(limit),
                    "--rate-burst",
                    "1",
                    "--burst",
                    "--output-dir",
                    str(out),
                ],
                env,
            )
            for _ in range(2)
        ]
        for pod in pods:
            assert pod.wait(timeout=120) == 0, pod.communicate()[1]
        served = _sim_stats(base_url)
    per_second = served["per_second"]
    busy = [count for count in per_second.values() if count > 0]
    print(f"limit {limit}/s: peak {max(busy)}/s over {len(busy)} s, {served['requests']} requests")
    assert max(busy) <= limit * 1.1
    assert served["requests"] >= corpus.minimal_requests(bootstrap=0)
    assert_exported_exactly(tmp_path, common, out, env, corpus.all_rpids())


def test_limit_far_above_the_site_adapts_and_loses_nothing(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE, SCRAPER_TARGET_BAN_COOLDOWN_S="3")
    videos, out = tmp_path / "videos.txt", tmp_path / "out"
    common = ["--target", "video-list", "--redis-url", redis_url]
    with simulator(
        env,
        "--session",
        SESSION,
        "--seed",
        "9",
        "--videos",
        "8",
        "--comments",
        "1500",
        "--rate-limit",
        "15",
        "--rate-burst",
        "5",
        "--ban-seconds",
        "1",
        "--write-videos",
        str(videos),
    ) as base_url:
        corpus = Corpus.generate(seed=9, videos=8, comments=1500)
        coordinate(env, common, videos, base_url)
        started = time.monotonic()
        work = run_cli(
            [
                "work",
                *common,
                "--processes",
                "2",
                "--concurrency",
                "8",
                "--rate-limit",
                "200",
                "--backoff-base",
                "0.2",
                "--max-attempts",
                "10",
                "--burst",
                "--output-dir",
                str(out),
            ],
            env,
            timeout=240,
        )
        assert work.returncode == 0, work.stderr
        served = _sim_stats(base_url)
        stats = stats_json(redis_url, env)
    share = served["banned_requests"] / served["requests"]
    print(
        f"ban share {share:.1%} ({served['banned_requests']}/{served['requests']}), "
        f"bans seen {stats['bans']}, {time.monotonic() - started:.1f}s"
    )
    assert stats["bans"] > 0  # the limit really was too high
    assert stats["dead"] == 0
    assert share < 0.5  # AIMD backs off instead of hammering a banned client
    assert_exported_exactly(tmp_path, common, out, env, corpus.all_rpids())
