"""A newcomer's first ten minutes (issue 14), through the real `scraper` command.

Each test checks what a user sees: the exit code, the one error line, the
summary, and what is (not) left on disk. No wall-clock assertions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import redis

from scraper.keys import TargetKeys
from scraper.simulator.corpus import Corpus
from tests.helpers import cli_env, exported_rpids, run_cli, simulator, start_cli, stats_json, wait_for

# The simulator plays the real service (issue 10): it logs in only with its session; the crawler sends it.
SESSION = "newcomer-session"

DEMO_VIDEOS = "BV17x411w7KC\nav2\n"
DEMO_AIDS = [170001, 2]


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def _videos(tmp_path: Path, text: str = DEMO_VIDEOS) -> Path:
    path = tmp_path / "videos.txt"
    path.write_text(text)
    return path


def _shards(out: Path) -> list[Path]:
    return sorted((out / "video-list").glob("*.jsonl"))


def _run(tmp_path: Path, redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "always"]
    args += ["--processes", "1", "--concurrency", "8", "--output-dir", str(tmp_path / "out")]
    args += ["--videos", str(_videos(tmp_path)), *extra]
    return run_cli(args, cli_env(tmp_path), timeout=180)


def test_run_then_run_again_says_there_is_nothing_to_do(tmp_path: Path, redis_url: str) -> None:
    first = _run(tmp_path, redis_url)
    assert first.returncode == 0, first.stderr
    output = tmp_path / "out" / "simulated" / "video-list.jsonl"  # a simulated run's own namespace (issue 10)
    expected = Corpus.for_aids(DEMO_AIDS, seed=1).all_rpids()
    assert set(exported_rpids(output)) == expected
    # The summary: comments and output, videos, pages at a real (non-zero) average rate, dead letters.
    assert f"run video-list: {len(expected)} comments -> {output} (0 duplicates removed)" in first.stdout
    assert "run video-list: 2 videos (2 complete, 0 incomplete); " in first.stdout and "0 dead letters" in first.stdout
    assert "pages/s average" in first.stdout and " (0 pages/s average)" not in first.stdout
    progress = [line for line in first.stderr.splitlines() if line.startswith("progress:")]
    assert "100.0%" in progress[-1] and "pages/s average" in progress[-1] and " 0 pages/s" not in progress[-1]
    # Start-up details are not INFO lines of a run any more: one line says the workers started.
    info = [line for line in first.stderr.splitlines() if " INFO " in line]
    assert len(info) == 1 and info[0].endswith("supervisor: 1 worker processes started"), first.stderr
    shards = _shards(tmp_path / "out" / "simulated")

    second = _run(tmp_path, redis_url)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stderr and "no workers started" in second.stdout
    assert "supervisor" not in second.stderr
    assert _shards(tmp_path / "out" / "simulated") == shards  # no new (empty) shard files
    assert set(exported_rpids(output)) == expected


def test_work_burst_with_nothing_queued_starts_no_workers(tmp_path: Path, redis_url: str) -> None:
    out = tmp_path / "out"
    args = ["work", "--target", "video-list", "--redis-url", redis_url, "--burst", "--output-dir", str(out)]
    result = run_cli(args, cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "nothing queued, in flight or delayed: no workers started" in result.stdout
    assert not _shards(out)


def test_run_with_dead_letters_exits_3_and_says_where_to_look(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    videos = tmp_path / "sim-videos.txt"
    sim = ["--session", SESSION, "--videos", "2", "--comments", "60", "--fail-rate", "1", "--write-videos", str(videos)]
    with simulator(env, *sim) as base_url:
        result = run_cli(
            [
                *["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "never"],
                *["--base-url", base_url, "--max-attempts", "1", "--processes", "1", "--concurrency", "4"],
                *["--videos", str(videos), "--output-dir", str(tmp_path / "out")],
            ],
            env,
            timeout=120,
        )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "run video-list: 0 comments" in result.stdout
    assert "2 dead letters" in result.stdout
    assert "scraper dead list --target video-list" in result.stdout


def test_interrupted_run_exits_130_and_a_rerun_completes(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    out = tmp_path / "out"
    videos = tmp_path / "sim-videos.txt"
    sim = [
        "--session",
        SESSION,
        "--seed",
        "3",
        "--videos",
        "6",
        "--comments",
        "3000",
        "--latency-ms",
        "150",
        "--write-videos",
        str(videos),
    ]
    with simulator(env, *sim) as base_url:
        args = [
            *["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "never"],
            *["--base-url", base_url, "--processes", "1", "--concurrency", "2", "--rate-limit", "0"],
            *["--videos", str(videos), "--output-dir", str(out), "--drain-timeout", "5"],
        ]
        proc = start_cli(args, env)
        wait_for(lambda: stats_json(redis_url, env)["pages_done"] >= 3, timeout=60)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stdout + stderr
        assert "Traceback" not in stderr
        assert "interrupted with pages left" in stdout and "run the same command again to resume" in stdout

        again = run_cli(args, env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    rpids = exported_rpids(out / "video-list.jsonl")
    assert len(rpids) == len(set(rpids))
    assert set(rpids) == Corpus.generate(seed=3, videos=6, comments=3000).all_rpids()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--rate-limit", "-1"], "--rate-limit (target.rate_limit, SCRAPER_TARGET_RATE_LIMIT) must be at least 0"),
        (["--batch-size", "0"], "--batch-size (worker.batch_size, SCRAPER_WORKER_BATCH_SIZE) must be 1-10000, got 0"),
        (["--metrics-port", "99999"], "must be 0 (off) or 1-65535, got 99999"),
        (["--drain-timeout", "-3"], "--drain-timeout (worker.drain_timeout_s, SCRAPER_WORKER_DRAIN_TIMEOUT_S)"),
        (["--processes", "100000"], "pass --force if you mean it"),
        (["--concurrency", "0"], "--concurrency"),
        (["--timeout", "0"], "--timeout (http.timeout_s, SCRAPER_HTTP_TIMEOUT_S) must be greater than 0"),
        (["--claim-idle", "nan"], "must be a finite number"),
        (["--rate-burst", "0"], "--rate-burst"),
        (["--max-attempts", "0"], "--max-attempts"),
    ],
)
@pytest.mark.parametrize("command", ["run", "work"])
def test_bad_numbers_are_one_line_and_exit_2(tmp_path: Path, command: str, flags: list[str], fragment: str) -> None:
    out = tmp_path / "out"
    # No Redis is reachable here: validation must come first.
    args = [command, "--target", "video-list", "--redis-url", "redis://127.0.0.1:1/0", "--output-dir", str(out)]
    result = run_cli([*args, *flags], cli_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert fragment in _one_line_error(result.stderr)
    assert not _shards(out)


def test_bad_number_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    env = cli_env(tmp_path, SCRAPER_WORKER_BATCH_SIZE="0")
    result = run_cli(["work", "--target", "video-list", "--burst"], env)
    assert result.returncode == 2
    assert "SCRAPER_WORKER_BATCH_SIZE) must be 1-10000, got 0" in _one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["simulate", "--port", "99999"], "--port must be 0-65535, got 99999"),
        (["simulate", "--fail-rate", "2"], "--fail-rate must be 0-1, got 2"),
        (["simulate", "--rate-burst", "0"], "--rate-burst must be at least 1"),
        (["exporter", "--port", "0"], "--port must be 1-65535, got 0"),
        (["health", "--max-age", "-1"], "--max-age must be greater than 0"),
    ],
)
def test_bad_numbers_of_other_commands(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run_cli(args, cli_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert fragment in _one_line_error(result.stderr)


@pytest.mark.parametrize("command", ["run", "coordinate"])
def test_empty_video_list_is_exit_2_naming_the_file(tmp_path: Path, redis_url: str, command: str) -> None:
    videos = _videos(tmp_path, "# nothing yet\n\n")
    out = tmp_path / "out"
    args = [command, "--target", "video-list", "--redis-url", redis_url, "--videos", str(videos)]
    if command == "run":
        args += ["--output-dir", str(out), "--simulate", "always"]
    result = run_cli(args, cli_env(tmp_path))
    assert result.returncode == 2
    assert f"{videos}: no videos in the list" in _one_line_error(result.stderr)
    assert redis.Redis.from_url(redis_url).exists(TargetKeys("video-list").tasks) == 0
    assert not (out / "video-list.jsonl").exists()


def test_dead_accepts_target_on_either_side_and_explains_itself(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_REDIS_URL=redis_url)
    for args in (["dead", "list", "--target", "video-list"], ["dead", "--target", "video-list", "list"]):
        result = run_cli(args, env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "no dead letters"
    as_json = run_cli(["dead", "list", "--target", "video-list", "--json"], env)
    assert as_json.returncode == 0 and orjson.loads(as_json.stdout) == []

    bare = run_cli(["dead", "--target", "video-list"], env)
    assert bare.returncode == 2
    assert bare.stderr.startswith("usage: scraper dead") and "requeue" in bare.stderr
    assert "dead_command" not in bare.stderr

    missing = run_cli(["dead", "list"], env)
    assert missing.returncode == 2
    assert "dead: --target NAME is required" in _one_line_error(missing.stderr)


def test_dead_list_json_numbers_are_numbers() -> None:
    from scraper.commands.dead import typed

    letter = {"id": "1700000000000-0", "fingerprint": "main:2:1", "attempts": "5", "error": "HTTP 503", "ts": "1.5"}
    assert typed(letter) == {**letter, "attempts": 5, "ts": 1.5}


def test_stats_watch_without_target_watches_every_target(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_REDIS_URL=redis_url)
    assert run_cli(["coordinate", "--target", "video-list", "--videos", str(_videos(tmp_path))], env).returncode == 0
    result = run_cli(["stats", "--watch", "--frames", "2"], env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("video-list") == 2  # two frames of the target table
    single = run_cli(["stats", "--target", "video-list"], env)
    assert "final" not in single.stdout  # no final pages: no empty field


def test_version_and_help_for_every_option() -> None:
    import argparse

    from scraper.cli import build_parser

    result = subprocess.run(
        [*__import__("tests.helpers", fromlist=["SCRAPER"]).SCRAPER, "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("scraper ")

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{prefix} {name}")
            elif action.help is None:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "scraper")
    assert missing == []


def test_reset_does_not_wait_for_consumers_that_are_provably_dead(tmp_path: Path, redis_url: str) -> None:
    import socket

    env = cli_env(tmp_path, SCRAPER_REDIS_URL=redis_url)
    assert run_cli(["coordinate", "--target", "video-list", "--videos", str(_videos(tmp_path))], env).returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid of this machine that no longer runs
    keys = TargetKeys("video-list")
    client = redis.Redis.from_url(redis_url)

    def beat(name: str, pid: int) -> None:
        record = {"host": socket.gethostname(), "pid": pid, "ts": time.time(), "in_flight": 3}
        client.hset(keys.consumers, name, orjson.dumps(record))

    beat("killed-1", gone.pid)
    assert run_cli(["reset", "--target", "video-list"], env).returncode == 0

    assert run_cli(["coordinate", "--target", "video-list", "--videos", str(_videos(tmp_path))], env).returncode == 0
    beat("alive-1", os.getpid())  # this test's own process: alive
    refused = run_cli(["reset", "--target", "video-list"], env)
    assert refused.returncode == 2
    assert "1 workers are running (e.g. alive-1)" in _one_line_error(refused.stderr)


def test_waits_are_explained() -> None:
    from scraper.progress import waiting_reason

    stats = {
        "pages_per_s_10s": 0.0,
        "in_flight": 90,
        "queued": 0,
        "delayed": 0,
        "consumers": [
            {"name": "pod-7-0", "host": "elsewhere", "pid": 7, "pending": 90, "idle_s": 65.0, "heartbeat_age_s": 60.0}
        ],
    }
    reason = waiting_reason(stats, heartbeat_s=2.0, claim_idle_s=90.0)
    assert reason is not None
    assert reason.startswith("waiting for 90 pages held by pod-7-0 that stopped heartbeating at ")
    assert reason.endswith("; takeover in 25s")
    assert waiting_reason({**stats, "pages_per_s_10s": 3.0}, heartbeat_s=2.0, claim_idle_s=90.0) is None
    retries = {**stats, "in_flight": 0, "delayed": 4, "consumers": []}
    assert waiting_reason(retries, heartbeat_s=2.0, claim_idle_s=90.0) == (
        "waiting for 4 pages to retry after their backoff"
    )


def _slow_crawl(tmp_path: Path, redis_url: str, base_url: str, videos: Path) -> list[str]:
    return [
        *["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "never"],
        *["--base-url", base_url, "--processes", "2", "--concurrency", "4", "--rate-limit", "0"],
        *["--videos", str(videos), "--output-dir", str(tmp_path / "out"), "--claim-idle", "600"],
    ]


def test_repeated_ctrl_c_leaves_nothing_in_flight(tmp_path: Path, redis_url: str) -> None:
    """Two Ctrl-C: the workers are killed, and `run` hands their pages back before it exits."""
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    videos = tmp_path / "sim-videos.txt"
    sim = ["--session", SESSION, "--seed", "4", "--videos", "6", "--comments", "3000", "--write-videos", str(videos)]
    # Every answer takes 4 s: the first Ctrl-C starts a drain that the second one cuts short.
    with simulator(env, *sim, "--slow-rate", "1", "--slow-ms", "4000") as base_url:
        args = _slow_crawl(tmp_path, redis_url, base_url, videos)
        proc = start_cli(args, env)
        wait_for(lambda: stats_json(redis_url, env)["in_flight"] >= 2, timeout=60)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stdout + stderr
        assert "Traceback" not in stderr
        stats = stats_json(redis_url, env)
        assert stats["in_flight"] == 0 and stats["queued"] > 0
    with simulator(env, *sim) as base_url:
        # claim_idle_s is 600 s: the rerun finishes only because nothing was left pending.
        again = run_cli([*args, "--base-url", base_url], env, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    rpids = exported_rpids(tmp_path / "out" / "video-list.jsonl")
    assert len(rpids) == len(set(rpids))
    assert set(rpids) == Corpus.generate(seed=4, videos=6, comments=3000).all_rpids()


def test_rerun_after_a_hard_kill_takes_the_dead_workers_pages_at_once(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    videos = tmp_path / "sim-videos.txt"
    sim = [
        "--session",
        SESSION,
        "--seed",
        "5",
        "--videos",
        "6",
        "--comments",
        "3000",
        "--latency-ms",
        "300",
        "--write-videos",
        str(videos),
    ]
    with simulator(env, *sim) as base_url:
        args = _slow_crawl(tmp_path, redis_url, base_url, videos)
        proc = start_cli(args, env)
        wait_for(lambda: stats_json(redis_url, env)["in_flight"] >= 2, timeout=60)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert stats_json(redis_url, env)["in_flight"] >= 2
        # claim_idle_s is 600 s: without the hand-back this rerun would wait ten minutes.
        again = run_cli(args, env, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "pages held by stopped workers of this machine are back in the queue" in again.stderr
    rpids = set(exported_rpids(tmp_path / "out" / "video-list.jsonl"))
    assert rpids == Corpus.generate(seed=5, videos=6, comments=3000).all_rpids()
