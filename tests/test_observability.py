"""See the crawl: stats from Redis alone, /metrics for pods and queues, the live view, logs."""

from __future__ import annotations

import asyncio
import io
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from scraper.dashboard import sparkline, watch
from scraper.keys import TargetKeys
from scraper.metrics import POD_METRICS, QUEUE_METRICS
from scraper.progress import progress_line
from scraper.simulator.corpus import Corpus
from tests.conftest import free_port
from tests.helpers import cli_env, coordinate, run_cli, simulator, start_cli, stats_json, wait_for

SESSION = "test-session"  # the simulator accepts it as SESSDATA; the crawler sends it (issue 10)
COOKIE = f"SESSDATA={SESSION}"
SIM_SESSION = ("--session", SESSION)


def _scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_stats_and_metrics_before_during_after(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    videos, out = tmp_path / "videos.txt", tmp_path / "out"
    common = ["--target", "video-list", "--redis-url", redis_url]
    metrics_port, exporter_port = free_port(), free_port()
    with simulator(
        env,
        "--session",
        SESSION,
        "--seed",
        "4",
        "--videos",
        "10",
        "--comments",
        "3000",
        "--latency-ms",
        "400",
        "--write-videos",
        str(videos),
    ) as base_url:
        corpus = Corpus.generate(seed=4, videos=10, comments=3000)
        coordinate(env, common, videos, base_url)
        before = stats_json(redis_url, env)
        assert (before["queued"], before["in_flight"], before["pages_done"], before["comments"]) == (10, 0, 0, 0)
        assert before["consumers"] == []

        exporter = start_cli(
            ["exporter", "--redis-url", redis_url, "--host", "127.0.0.1", "--port", str(exporter_port)], env
        )
        pod = start_cli(
            [
                "work",
                *common,
                "--processes",
                "2",
                "--concurrency",
                "4",
                "--rate-limit",
                "0",
                "--burst",
                "--metrics-port",
                str(metrics_port),
                "--output-dir",
                str(out),
            ],
            env,
        )
        try:
            wait_for(lambda: stats_json(redis_url, env)["pages_done"] >= 10, timeout=60)
            during = stats_json(redis_url, env)
            assert during["in_flight"] > 0
            assert len(during["consumers"]) == 2
            assert all(c["heartbeat_age_s"] < 10 for c in during["consumers"])
            refused = run_cli(["reset", *common], env)  # never pull the queue from under live workers
            assert refused.returncode == 2 and "2 workers are running" in refused.stderr
            health = run_cli(["health"], env)  # the liveness probe, reading the heartbeat dir from the env
            assert health.returncode == 0 and "2 worker processes" in health.stdout
            # rates count whole seconds: wait for the first one to close
            wait_for(lambda: stats_json(redis_url, env)["pages_per_s_60s"] > 0, timeout=10)

            wait_for(lambda: "scraper_pages" in _scrape(metrics_port), timeout=30)
            pod_metrics = _scrape(metrics_port)
            # prometheus' parser strips _total from counter family names
            assert {
                "scraper_pages",
                "scraper_comments",
                "scraper_request_duration_seconds",
                "scraper_in_flight",
            } <= set(pod_metrics)
            ok = [
                s
                for s in pod_metrics["scraper_pages"]
                if s.name == "scraper_pages_total" and s.labels["status"] == "ok"
            ]
            assert ok and ok[0].labels["target"] == "video-list" and ok[0].value > 0
            buckets = [s for s in pod_metrics["scraper_request_duration_seconds"] if s.name.endswith("_bucket")]
            assert buckets and max(s.value for s in buckets) > 0

            queue_metrics = _scrape(exporter_port)
            for name in ("scraper_queue_lag", "scraper_queue_pending", "scraper_queue_delayed", "scraper_dead_letters"):
                assert [s.labels["target"] for s in queue_metrics[name]] == ["video-list"]

            assert pod.wait(timeout=120) == 0
        finally:
            for proc in (pod, exporter):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
    after = stats_json(redis_url, env)
    assert (after["queued"], after["in_flight"], after["delayed"], after["dead"]) == (0, 0, 0, 0)
    assert after["done"] and after["pages_remaining"] == 0
    assert after["comments"] == corpus.expected_comment_count()
    assert after["consumers"] == []  # clean exit removes the heartbeats

    listing = run_cli(["stats", "--redis-url", redis_url, "--json"], env)
    targets = orjson.loads(listing.stdout)["targets"]
    assert [(t["target"], t["comments"]) for t in targets] == [("video-list", corpus.expected_comment_count())]


def test_every_exported_name_is_declared() -> None:
    assert set(POD_METRICS) | set(QUEUE_METRICS) == {
        "scraper_pages_total",
        "scraper_comments_total",
        "scraper_request_duration_seconds",
        "scraper_retries_total",
        "scraper_in_flight",
        "scraper_bans_total",
        "scraper_queue_lag",
        "scraper_queue_pending",
        "scraper_queue_delayed",
        "scraper_dead_letters",
        "scraper_crawl_pages_done_total",
        "scraper_crawl_comments_total",
        "scraper_rate_limit_effective_requests_per_second",
        "scraper_consumers",
    }


async def test_watch_renders_frames(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    keys = TargetKeys("watched")
    await client.hset(keys.stats, mapping={"pages_known": 40, "pages_done": 10, "comments": 200})
    out = io.StringIO()
    await watch(client, keys, frames=2, stream=out, interval_s=0.01)
    await client.aclose()
    frames = out.getvalue().strip().split("target watched")
    assert len(frames) == 3  # text before the first frame is empty
    assert "pages 10 done of 40 known" in frames[-1]
    assert "comments 200" in frames[-1] and "pages/s" in frames[-1]


def test_sparkline_and_progress_line() -> None:
    assert sparkline([0, 1, 2, 4, 8]) == " ▁▂▄█"  # scaled to the largest value
    stats = {
        "pages_known": 200,
        "pages_remaining": 50,
        "comments": 3000,
        "pages_per_s_10s": 25.0,
        "queued": 40,
        "in_flight": 10,
        "retries": 2,
        "dead": 0,
        "eta_s": 2.0,
    }
    assert progress_line(stats, bar=False).startswith("progress:  75.0% 150/200 pages  3000 comments  25 pages/s")
    assert progress_line(stats, bar=True).startswith("[" + "#" * 22 + "." * 8 + "]  75.0%")


def test_stats_text_view(tmp_path: Path, redis_url: str) -> None:
    async def seed() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.hset(
            TargetKeys("video-list").stats,
            mapping={"pages_known": 5, "pages_done": 5, "retries": 1, "retries:timeout": 1, "final:closed": 1},
        )
        await client.aclose()

    asyncio.run(seed())
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    result = run_cli(["stats", "--target", "video-list", "--redis-url", redis_url], env)
    assert result.returncode == 0, result.stderr
    assert "retries 1 (timeout 1)" in result.stdout and "final (closed 1)" in result.stdout
    watched = run_cli(["stats", "--target", "video-list", "--redis-url", redis_url, "--watch", "--frames", "1"], env)
    assert watched.returncode == 0 and "pages/s   " in watched.stdout


def test_run_prints_plain_progress_and_json_logs(tmp_path: Path) -> None:
    env = cli_env(tmp_path, SCRAPER_REDIS_URL="")
    videos = tmp_path / "videos.txt"
    videos.write_text("av170001\n")
    result = run_cli(
        [
            *[
                "run",
                "--target",
                "video-list",
                "--simulate",
                "always",
                "--processes",
                "1",
                "--concurrency",
                "4",
                "--log-format",
                "json",
            ],
            "--videos",
            str(videos),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        env,
        timeout=120,
    )
    try:
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        progress = [line for line in lines if line.startswith("progress:")]
        assert progress and "100.0%" in progress[-1]  # not a terminal: plain lines, the last one complete
        logs = [orjson.loads(line) for line in lines if line.startswith("{")]
        assert any("started" in entry["message"] and entry["level"] == "info" for entry in logs)
        assert not any(
            entry["level"] == "info" and "page" in entry["message"] and "pages" not in entry["message"]
            for entry in logs
        )
    finally:
        run_cli(["redis", "stop"], env)


@pytest.mark.parametrize("value", ["loud"])
def test_bad_log_level(tmp_path: Path, value: str) -> None:
    result = run_cli(
        ["stats", "--target", "video-list", "--log-level", value], cli_env(tmp_path, SCRAPER_COOKIE=COOKIE)
    )
    assert result.returncode == 2 and "--log-level must be one of" in result.stderr
