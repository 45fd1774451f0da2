"""Never lose a page: faults, kill -9, a Redis restart, SIGTERM; the export is still exact."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import orjson

from scraper.simulator.corpus import Corpus
from tests.conftest import RedisServer
from tests.helpers import (
    assert_exported_exactly,
    cli_env,
    coordinate,
    run_cli,
    simulator,
    start_cli,
    stats_json,
    wait_for,
    worker_children,
)

SEED, VIDEOS, COMMENTS = 5, 24, 12000
FAULTS = [
    "--fail-rate",
    "0.03",
    "--truncate-rate",
    "0.02",
    "--bad-json-rate",
    "0.02",
    "--reset-rate",
    "0.02",
    "--slow-rate",
    "0.01",
    "--slow-ms",
    "2500",
]
WORK = [
    "--processes",
    "2",
    "--concurrency",
    "4",
    "--rate-limit",
    "0",
    "--claim-idle",
    "2",
    "--backoff-base",
    "0.1",
    "--timeout",
    "1",
]

SESSION = "test-session"  # the simulator accepts it as SESSDATA; the crawler sends it (issue 10)
COOKIE = f"SESSDATA={SESSION}"
SIM_SESSION = ("--session", SESSION)


def test_chaos_kill_and_redis_restart(tmp_path: Path, aof_redis: RedisServer) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    url = aof_redis.url
    videos = tmp_path / "videos.txt"
    out = tmp_path / "out"
    common = ["--target", "video-list", "--redis-url", url]
    started = time.monotonic()
    with simulator(
        env,
        "--session",
        SESSION,
        "--seed",
        str(SEED),
        "--videos",
        str(VIDEOS),
        "--comments",
        str(COMMENTS),
        "--latency-ms",
        "100",
        "--write-videos",
        str(videos),
        *FAULTS,
    ) as base_url:
        corpus = Corpus.generate(seed=SEED, videos=VIDEOS, comments=COMMENTS)
        coordinate(env, common, videos, base_url)

        # 1. A worker pod; kill -9 one of its children mid-crawl: the supervisor restarts it.
        pod = start_cli(["work", *common, *WORK, "--output-dir", str(out)], env)
        beats = tmp_path / "heartbeat"
        wait_for(
            lambda: stats_json(url, env)["pages_done"] >= 60 and len(worker_children(pod.pid, beats)) == 2, timeout=60
        )
        victim = worker_children(pod.pid, beats)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in worker_children(pod.pid, beats) and len(worker_children(pod.pid, beats)) == 2,
            timeout=30,
        )

        # 2. kill -9 the whole worker process group: every page it held stays pending.
        done_before = stats_json(url, env)["pages_done"]
        wait_for(lambda: stats_json(url, env)["pages_done"] >= done_before + 60, timeout=60)
        os.killpg(pod.pid, signal.SIGKILL)
        pod.wait(timeout=10)
        held = stats_json(url, env)["in_flight"]

        # 3. Redis restarts (AOF on): the queue, the pending entries and the counters survive.
        aof_redis.stop()
        aof_redis.start()
        after_restart = stats_json(url, env)
        assert after_restart["in_flight"] == held

        # 4. A fresh worker finishes the crawl, taking over the dead consumers' pages.
        finish = run_cli(["work", *common, *WORK, "--burst", "--output-dir", str(out)], env, timeout=300)
        assert finish.returncode == 0, finish.stderr
        faults = orjson.loads(urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=5).read())["faults"]

    elapsed = time.monotonic() - started
    exported = assert_exported_exactly(tmp_path, common, out, env, corpus.all_rpids())

    final = stats_json(url, env)
    assert (final["queued"], final["in_flight"], final["delayed"], final["dead"]) == (0, 0, 0, 0)
    assert final["retries"] > 0 and final["reclaimed"] >= held > 0
    assert sum(faults.values()) > 0
    report = {
        "pages": final["pages_done"] + sum(final["final"].values()),
        "faults_injected": faults,
        "retries": final["retries_by_reason"],
        "reclaimed": final["reclaimed"],
        "held_at_kill": held,
        "export": exported.stdout.strip(),
        "seconds": round(elapsed, 1),
    }
    (tmp_path / "chaos-report.json").write_bytes(orjson.dumps(report))
    print("chaos report:", orjson.dumps(report).decode())


def test_sigterm_drains_and_exits_zero(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    videos = tmp_path / "videos.txt"
    out = tmp_path / "out"
    common = ["--target", "video-list", "--redis-url", redis_url]
    with simulator(
        env,
        "--session",
        SESSION,
        "--seed",
        "3",
        "--videos",
        "12",
        "--comments",
        "4000",
        "--latency-ms",
        "300",
        "--write-videos",
        str(videos),
    ) as base_url:
        corpus = Corpus.generate(seed=3, videos=12, comments=4000)
        coordinate(env, common, videos, base_url)
        pod = start_cli(
            [
                "work",
                *common,
                "--processes",
                "2",
                "--concurrency",
                "8",
                "--rate-limit",
                "0",
                "--drain-timeout",
                "5",
                "--output-dir",
                str(out),
            ],
            env,
        )
        wait_for(lambda: stats_json(redis_url, env)["pages_done"] >= 20, timeout=60)
        assert stats_json(redis_url, env)["in_flight"] > 0
        sent = time.monotonic()
        pod.send_signal(signal.SIGTERM)  # to the supervisor only, as Kubernetes does
        assert pod.wait(timeout=30) == 0
        drain_s = time.monotonic() - sent
        _, stderr = pod.communicate()
        assert "draining workers" in stderr
        # Everything it held was finished (acknowledged, lines on disk) or handed back.
        after = stats_json(redis_url, env)
        assert after["in_flight"] == 0
        assert after["queued"] > 0

        # Nothing was lost: another worker finishes, and the export is exact.
        finish = run_cli(
            [
                "work",
                *common,
                "--processes",
                "1",
                "--concurrency",
                "16",
                "--rate-limit",
                "0",
                "--burst",
                "--output-dir",
                str(out),
            ],
            env,
            timeout=300,
        )
        assert finish.returncode == 0, finish.stderr
    assert_exported_exactly(tmp_path, common, out, env, corpus.all_rpids())
    print(f"drain took {drain_s:.1f}s")


def test_second_interrupt_hands_back_at_once(tmp_path: Path, redis_url: str) -> None:
    """Ctrl-C drains; a second Ctrl-C does not wait for slow pages but hands them back."""
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    videos = tmp_path / "videos.txt"
    common = ["--target", "video-list", "--redis-url", redis_url]
    with simulator(
        env,
        "--session",
        SESSION,
        "--seed",
        "3",
        "--videos",
        "6",
        "--latency-ms",
        "20000",
        "--write-videos",
        str(videos),
    ) as url:
        coordinate(env, common, videos, url)
        pod = start_cli(["work", *common, "--processes", "1", "--rate-limit", "0", "--drain-timeout", "60",
                         "--output-dir", str(tmp_path / "out")], env)  # fmt: skip
        wait_for(lambda: stats_json(redis_url, env)["in_flight"] > 0, timeout=30)
        os.killpg(pod.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
        time.sleep(1.0)
        assert pod.poll() is None  # draining: the pages take 20 s
        os.killpg(pod.pid, signal.SIGINT)
        assert pod.wait(timeout=15) == 1
        _, stderr = pod.communicate()
        assert "second interrupt: handing back in-flight pages now" in stderr
    # Nothing was acknowledged without its lines, and nothing stays pending: the
    # six pages are back in the queue for the next run.
    after = stats_json(redis_url, env)
    assert (after["in_flight"], after["queued"], after["pages_done"]) == (0, 6, 0)
