"""Ctrl-C, once or again and again: no acknowledgement lost, nothing left in flight."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.faults_support import crawl
from tests.helpers import assert_exported_exactly, run_cli, start_cli, stats_json, wait_for

WORK = ["--processes", "2", "--concurrency", "64", "--rate-limit", "0"]


def test_graceful_ctrl_c_never_leaves_a_page_pending(tmp_path: Path, redis_url: str) -> None:
    """Issue 12, finding 5 (about 1 run in 6 before): a settle cancelled after it
    swapped its batch left pages pending. Five interrupted runs, each checked."""
    slow = ["--processes", "2", "--concurrency", "8", "--rate-limit", "0"]
    with crawl(tmp_path, redis_url, seed=51, videos=16, comments=50000, sim=("--latency-ms", "100")) as c:
        for _ in range(5):
            done = stats_json(redis_url, c.env)["pages_done"]
            pod = start_cli(["work", *c.common, *slow, "--output-dir", str(c.out)], c.env)
            wait_for(lambda done=done: stats_json(redis_url, c.env)["pages_done"] >= done + 60, timeout=60)
            os.killpg(pod.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
            assert pod.wait(timeout=60) == 0, pod.communicate()[1]
            after = stats_json(redis_url, c.env)
            assert after["in_flight"] == 0, pod.communicate()[1]
            assert after["queued"] > 0  # interrupted mid-crawl, not at its end
        finish = run_cli(["work", *c.common, *WORK, "--burst", "--output-dir", str(c.out)], c.env, timeout=300)
        assert finish.returncode == 0, finish.stderr
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def test_repeated_ctrl_c_during_run_leaves_nothing_in_flight(tmp_path: Path, redis_url: str) -> None:
    with crawl(tmp_path, redis_url, seed=52, videos=12, comments=12000, sim=("--latency-ms", "2000")) as c:
        videos = tmp_path / "videos.txt"
        run = start_cli(["run", *c.common, *WORK, "--videos", str(videos), "--base-url", c.base_url,
                         "--simulate", "never", "--output-dir", str(c.out)], c.env)  # fmt: skip
        wait_for(lambda: stats_json(redis_url, c.env)["pages_done"] >= 20, timeout=60)
        for _ in range(4):  # an impatient user
            os.killpg(run.pid, signal.SIGINT)
            time.sleep(0.3)
        assert run.wait(timeout=30) == 130  # interrupted with work left (README: exit codes of run)
        _, stderr = run.communicate()
        assert "second interrupt: handing back in-flight pages now" in stderr
        assert "Traceback" not in stderr
        after = stats_json(redis_url, c.env)
        assert after["in_flight"] == 0 and after["queued"] > 0
        finish = run_cli(["work", *c.common, *WORK, "--burst", "--output-dir", str(c.out)], c.env, timeout=300)
        assert finish.returncode == 0, finish.stderr
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)
