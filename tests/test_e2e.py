"""The whole crawl as a user runs it: subprocesses, a real redis-server, the simulator."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import orjson
import pytest

from scraper.simulator.corpus import Corpus
from tests.helpers import assert_exported_exactly, cli_env, coordinate, exported_rpids, run_cli, simulator, start_cli

SEED, VIDEOS, COMMENTS = 11, 24, 4000
SESSION = "e2e-session"  # the simulator's accepted SESSDATA; the crawler gets it as SCRAPER_COOKIE


@pytest.fixture
def corpus() -> Corpus:
    return Corpus.generate(seed=SEED, videos=VIDEOS, comments=COMMENTS)


def test_coordinate_work_export(tmp_path: Path, redis_url: str, corpus: Corpus) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    videos = tmp_path / "videos.txt"
    sim_args = [
        "--session",
        SESSION,
        "--seed",
        str(SEED),
        "--videos",
        str(VIDEOS),
        "--comments",
        str(COMMENTS),
        "--write-videos",
        str(videos),
    ]
    with simulator(env, *sim_args) as base_url:
        lines = [line for line in videos.read_text().splitlines() if line and not line.startswith("#")]
        forms = Counter("url" if line.startswith("http") else line[:2] for line in lines)
        assert forms["BV"] and forms["av"] and forms["url"], forms  # every input form is exercised
        assert len(lines) == VIDEOS + 1  # and one duplicate

        common = ["--target", "video-list", "--redis-url", redis_url]
        first = run_cli(["coordinate", *common, "--videos", str(videos), "--base-url", base_url], env)
        assert first.returncode == 0, first.stderr
        assert f"{VIDEOS + 1} videos read, 1 duplicates dropped, {VIDEOS} tasks enqueued" in first.stdout

        again = run_cli(["coordinate", *common, "--videos", str(videos), "--base-url", base_url], env)
        assert again.returncode == 0, again.stderr
        assert "0 tasks enqueued" in again.stdout

        out = tmp_path / "out"
        work = run_cli(
            [
                "work",
                *common,
                "--processes",
                "2",
                "--concurrency",
                "16",
                "--burst",
                "--output-dir",
                str(out),
                "--rate-limit",
                "0",
            ],
            env,
            timeout=180,
        )
        assert work.returncode == 0, work.stderr
        assert "uvloop" in work.stderr  # each child logs its loop class at start

    assert_exported_exactly(tmp_path, common, out, env, corpus.all_rpids())
    export_file = tmp_path / "all.jsonl"
    assert len(list((out / "video-list").glob("*.jsonl"))) == 2  # one shard per child

    record = orjson.loads(export_file.read_bytes().splitlines()[0])
    assert set(record) >= {
        "rpid",
        "oid",
        "bvid",
        "root",
        "parent",
        "mid",
        "uname",
        "message",
        "ctime",
        "like",
        "rcount",
        "crawled_at",
    }

    stats = run_cli(["stats", *common, "--json"], env)
    assert stats.returncode == 0, stats.stderr
    numbers = orjson.loads(stats.stdout)
    assert (numbers["queued"], numbers["in_flight"], numbers["delayed"], numbers["dead"]) == (0, 0, 0, 0)
    # Every page once; a thread whose root was deleted after listing costs all its pages (12022 each).
    minimal = corpus.minimal_requests(bootstrap=0)
    assert minimal <= numbers["pages_done"] + sum(numbers["final"].values()) <= minimal * 1.1
    assert numbers["comments"] >= len(corpus.all_rpids())
    assert numbers["final"]["closed"] == 1 and numbers["final"]["deleted"] >= 1
    assert numbers["videos"] == {"complete": VIDEOS - 2, "closed": 1, "deleted": 1, "incomplete": 0, "pending": 0}

    report = run_cli(["report", *common, "--json"], env)
    assert report.returncode == 0, report.stdout
    assert orjson.loads(report.stdout)["summary"] == numbers["videos"]


def test_run_with_embedded_redis_and_simulator(tmp_path: Path) -> None:
    """`scraper run` on a machine with no Redis configured and no site reachable."""
    env = cli_env(tmp_path, SCRAPER_REDIS_URL="")
    videos = tmp_path / "videos.txt"
    videos.write_text("BV17x411w7KC\nav2\nhttps://www.bilibili.com/video/BV1xx411c7mD/?p=1\n")
    output = tmp_path / "all.jsonl"
    result = run_cli(
        [
            *["run", "--target", "video-list", "--simulate", "always", "--processes", "2", "--concurrency", "8"],
            "--videos",
            str(videos),
            "--output-dir",
            str(tmp_path / "out"),
            "--output",
            str(output),
        ],
        env,
        timeout=180,
    )
    try:
        assert result.returncode == 0, result.stderr
        assert "crawling the bundled simulator" in result.stderr
        assert "2 videos: 2 complete" in result.stdout  # the demo ends complete, exit 0
        expected = Corpus.for_aids([170001, 2], seed=1).all_rpids()
        rpids = exported_rpids(output)
        assert len(rpids) == len(set(rpids))
        assert set(rpids) == expected
        assert f"{len(expected)} comments -> {output}" in result.stdout
        assert (tmp_path / "state" / "redis" / "appendonly.aof").exists() or any(
            (tmp_path / "state" / "redis").glob("appendonly*")
        )
    finally:
        run_cli(["redis", "stop"], env)


def test_two_terminals_share_the_embedded_redis(tmp_path: Path) -> None:
    """`coordinate` in one terminal, `work` in another: no Redis configured anywhere."""
    env = cli_env(tmp_path, SCRAPER_REDIS_URL="", SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    videos = tmp_path / "videos.txt"
    sim_args = ["--seed", "6", "--videos", "5", "--comments", "600", "--session", SESSION]
    try:
        with simulator(env, *sim_args, "--write-videos", str(videos)) as url:
            coordinated = run_cli(
                ["coordinate", "--target", "video-list", "--videos", str(videos), "--base-url", url], env
            )
            assert coordinated.returncode == 0, coordinated.stderr
            assert "5 tasks enqueued" in coordinated.stdout and "unix://" in coordinated.stdout
            work = run_cli(["work", "--target", "video-list", "--processes", "1", "--rate-limit", "0", "--burst",
                            "--output-dir", str(tmp_path / "out")], env, timeout=120)  # fmt: skip
            assert work.returncode == 0, work.stderr
        export_file = tmp_path / "all.csv"
        exported = run_cli(["export", "--target", "video-list", "--output-dir", str(tmp_path / "out"),
                            "--output", str(export_file), "--format", "csv"], env)  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        with export_file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames is not None and reader.fieldnames[:3] == ["rpid", "oid", "bvid"]
            rpids = [int(row["rpid"]) for row in reader]
        expected = Corpus.generate(seed=6, videos=5, comments=600).all_rpids()
        assert sorted(rpids) == sorted(expected)
        assert run_cli(["redis", "status"], env).returncode == 0
    finally:
        run_cli(["redis", "stop"], env)


def test_reset_starts_a_target_over(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path)
    videos = tmp_path / "videos.txt"
    videos.write_text("av170001\nav2\n")
    common = ["--target", "video-list", "--redis-url", redis_url]
    coordinate(env, common, videos, "http://127.0.0.1:9")
    again = run_cli(["coordinate", *common, "--videos", str(videos)], env)
    assert "0 tasks enqueued" in again.stdout
    reset = run_cli(["reset", *common], env)
    assert reset.returncode == 0, reset.stderr
    assert "keys deleted" in reset.stdout
    assert orjson.loads(run_cli(["stats", "--redis-url", redis_url, "--json"], env).stdout)["targets"] == []
    fresh = run_cli(["coordinate", *common, "--videos", str(videos)], env)
    assert "2 tasks enqueued" in fresh.stdout


def test_idle_workers_settle_without_waiting_for_the_tick(tmp_path: Path, redis_url: str) -> None:
    """A small crawl is a few hops (page 1, then its pages and threads, then theirs), and a
    hop's pages exist only once the page that found them is settled. With a settle tick of
    ten minutes, a worker whose coroutines sit idle must settle what it holds at once (and
    a burst must see its end), or this crawl would take a tick per hop."""
    seed, videos_n, comments = 5, 3, 900
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_WORKER_SETTLE_INTERVAL_MS="600000")
    videos = tmp_path / "videos.txt"
    sim_args = ["--session", SESSION, "--seed", str(seed), "--videos", str(videos_n), "--comments", str(comments)]
    with simulator(env, *sim_args, "--write-videos", str(videos)) as base_url:
        common = ["--target", "video-list", "--redis-url", redis_url]
        coordinate(env, common, videos, base_url)
        out = tmp_path / "out"
        work = start_cli(["work", *common, "--processes", "1", "--concurrency", "128", "--burst",
                          "--output-dir", str(out), "--rate-limit", "0"], env)  # fmt: skip
        _, stderr = work.communicate(timeout=90)  # a tick per hop would be 20 minutes and more
        assert work.returncode == 0, stderr
    expected = Corpus.generate(seed=seed, videos=videos_n, comments=comments).expected_rpids()
    assert_exported_exactly(tmp_path, common, out, env, expected)
