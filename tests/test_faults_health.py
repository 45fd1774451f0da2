"""`scraper health`: a wedged process fails the probe; a process waiting for Redis or the site does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.faults_support import crawl
from tests.helpers import cli_env, run_cli, start_cli, stats_json, wait_for, worker_children
from workers.health import check, process_start


def _beat(directory: Path, name: str, *, pid: int | None = None, age_s: float = 0.0, **state: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pid = os.getpid() if pid is None else pid
    record = {"name": name, "pid": pid, "start": process_start(pid) or "0", "ts": time.time(), **state}
    path = directory / f"{name}.beat"
    path.write_bytes(orjson.dumps(record))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def test_health_verdicts(tmp_path: Path) -> None:
    beats = tmp_path / "beats"
    now = time.time()
    _beat(beats, "idle", unsettled=0, progress_ts=now - 3600, waiting="")
    _beat(beats, "busy", unsettled=40, progress_ts=now - 1, waiting="")
    _beat(beats, "redis-down", unsettled=40, progress_ts=now - 3600, waiting="redis")
    _beat(beats, "redis-full", unsettled=40, progress_ts=now - 3600, waiting="redis-writes")
    _beat(beats, "rate-limited", unsettled=40, progress_ts=now - 3600, waiting="site")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _beat(beats, "killed-long-ago", pid=gone.pid, age_s=3600)  # a leftover: its process is gone
    verdict = check(beats, max_age_s=30, stall_s=120)
    assert verdict.ok and sorted(verdict.healthy) == ["busy", "idle", "rate-limited", "redis-down", "redis-full"]

    _beat(beats, "wedged", unsettled=40, progress_ts=now - 600, waiting="")
    _beat(beats, "stalled", age_s=120, unsettled=0)
    verdict = check(beats, max_age_s=30, stall_s=120)
    assert not verdict.ok
    assert [p.split(":")[0] for p in verdict.problems] == ["stalled", "wedged"]
    assert "40 pages held, no progress for 600s" in verdict.problems[1]

    env = cli_env(tmp_path)
    probe = run_cli(["health", "--heartbeat-dir", str(beats), "--stall", "120"], env)
    assert probe.returncode == 1
    assert "unhealthy: wedged: wedged: 40 pages held" in probe.stderr


def test_one_wedged_child_of_two_fails_the_probe(tmp_path: Path, redis_url: str) -> None:
    """Issue 16, item 8: a stopped child (SIGSTOP: its loop does nothing) fails the pod."""
    with crawl(tmp_path, redis_url, seed=61, videos=10, comments=20000, sim=("--latency-ms", "300")) as c:
        beats = tmp_path / "heartbeat"
        pod = start_cli(["work", *c.common, "--processes", "2", "--concurrency", "8", "--rate-limit", "0",
                         "--output-dir", str(c.out)], c.env)  # fmt: skip
        wait_for(
            lambda: stats_json(redis_url, c.env)["pages_done"] >= 20 and len(worker_children(pod.pid, beats)) == 2,
            timeout=60,
        )
        assert run_cli(["health", "--max-age", "3"], c.env).returncode == 0
        victim = worker_children(pod.pid, beats)[0]
        os.kill(victim, signal.SIGSTOP)
        try:
            wait_for(lambda: run_cli(["health", "--max-age", "3"], c.env).returncode == 1, timeout=30)
            probe = run_cli(["health", "--max-age", "3"], c.env)
            assert f"-{victim}-" in probe.stderr and "event loop stalled" in probe.stderr
        finally:
            os.kill(victim, signal.SIGCONT)
        wait_for(lambda: run_cli(["health", "--max-age", "3"], c.env).returncode == 0, timeout=30)
        os.killpg(pod.pid, signal.SIGINT)
        assert pod.wait(timeout=60) == 0
