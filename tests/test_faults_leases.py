"""Claims cannot outlive their lease; only the dead are taken over, and at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from tests.conftest import RedisServer
from tests.faults_support import crawl
from tests.helpers import assert_exported_exactly, run_cli, start_cli, stats_json, wait_for


def test_rate_limit_below_claim_capacity_fetches_each_page_once(tmp_path: Path, redis_url: str) -> None:
    """Issue 12, finding 1: 2 x 128 coroutines hold far more pages than 60 req/s
    can start within a 5 s takeover idle; they must still be fetched once."""
    with crawl(tmp_path, redis_url, seed=11, videos=30, comments=20000) as c:
        work = run_cli(
            ["work", *c.common, "--processes", "2", "--concurrency", "128", "--rate-limit", "60",
             "--claim-idle", "5", "--burst", "--output-dir", str(c.out)],
            c.env,
            timeout=400,
        )  # fmt: skip
        assert work.returncode == 0, work.stderr
        requests = c.page_requests()
    final = stats_json(redis_url, c.env)
    # Every page settled once: those with comments (cursor pages followed inline included) and
    # those that do not exist (closed, deleted). No faults: any request beyond them is a duplicate.
    pages = final["pages_done"] + sum(final["final"].values())
    duplicates = requests - pages
    print(f"rate-limited crawl: {pages} pages, {requests} requests, {duplicates} duplicate fetches")
    assert pages > 600
    assert 0 <= duplicates < pages / 100
    assert final["reclaimed"] == 0  # nobody was dead: nothing was taken over
    assert "taken over by another consumer" not in work.stderr
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def test_hard_kill_pages_are_taken_over_at_once(tmp_path: Path, redis_url: str) -> None:
    """kill -9 of a whole pod: the next worker takes its pages over as soon as the
    heartbeat proves it dead, not after the (here: 10 minute) takeover idle."""
    slow = ("--latency-ms", "300")
    with crawl(tmp_path, redis_url, seed=12, videos=8, comments=3000, sim=slow) as c:
        args = ["--processes", "2", "--concurrency", "16", "--rate-limit", "0", "--claim-idle", "600"]
        pod = start_cli(["work", *c.common, *args, "--output-dir", str(c.out)], c.env)
        wait_for(lambda: stats_json(redis_url, c.env)["pages_done"] >= 30, timeout=60)
        os.killpg(pod.pid, signal.SIGKILL)
        pod.wait(timeout=10)
        held = stats_json(redis_url, c.env)["in_flight"]
        assert held > 0
        # A 10-minute idle rule would make this time out; the heartbeat rule does not.
        finish = run_cli(["work", *c.common, *args, "--burst", "--output-dir", str(c.out)], c.env, timeout=120)
        assert finish.returncode == 0, finish.stderr
        assert "pages of dead consumers" in finish.stderr
    final = stats_json(redis_url, c.env)
    assert final["reclaimed"] >= held
    assert (final["queued"], final["in_flight"], final["delayed"]) == (0, 0, 0)
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def test_killed_child_is_marked_dead_by_its_supervisor(tmp_path: Path, redis_url: str) -> None:
    """kill -9 of one child: the supervisor marks it dead, its sibling takes its
    pages over, the restarted child goes on; the export is exact."""
    from tests.helpers import worker_children  # noqa: PLC0415

    with crawl(tmp_path, redis_url, seed=13, videos=8, comments=3000, sim=("--latency-ms", "200")) as c:
        beats = tmp_path / "heartbeat"
        args = ["--processes", "2", "--concurrency", "16", "--rate-limit", "0", "--claim-idle", "600"]
        pod = start_cli(["work", *c.common, *args, "--burst", "--output-dir", str(c.out)], c.env)
        admin = redis.Redis.from_url(redis_url)

        def holder() -> int | None:
            """A live child that holds pages right now (one still warming up holds
            none, and killing it would prove nothing)."""
            children = worker_children(pod.pid, beats)
            if stats_json(redis_url, c.env)["pages_done"] < 30 or len(children) != 2:
                return None
            summary = admin.xpending("scraper:{video-list}:tasks", "workers")
            held = {int(row["name"].decode().rsplit("-", 2)[1]): row["pending"] for row in summary["consumers"]}
            return next((pid for pid in children if held.get(pid, 0) >= 4), None)

        os.kill(wait_for(holder, timeout=60), signal.SIGKILL)
        admin.close()
        assert pod.wait(timeout=120) == 0
        _, stderr = pod.communicate()
        assert "pages of dead consumers" in stderr
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def test_orphans_pending_under_a_live_consumer_are_finished(tmp_path: Path, redis_server: RedisServer,
                                                            redis_url: str) -> None:  # fmt: skip
    """DESIGN "Redis crash orphans": entries pending under a live consumer that
    does not hold them (as after an AOF restart that lost its last second).
    Nobody may take them over (their consumer is alive): it must finish them."""
    with crawl(tmp_path, redis_url, seed=14, videos=8, comments=4000, sim=("--latency-ms", "200")) as c:
        args = ["--processes", "1", "--concurrency", "4", "--batch-size", "4", "--rate-limit", "0", "--claim-idle", "3"]
        pod = start_cli(["work", *c.common, *args, "--burst", "--output-dir", str(c.out)], c.env)
        admin = redis_server.client()
        wait_for(lambda: stats_json(redis_url, c.env)["queued"] >= 20, timeout=60)
        [live] = [name.decode() for name in admin.hkeys("scraper:{video-list}:consumers")]
        # Deliver five queued pages to the live consumer behind its back.
        stolen = admin.xreadgroup("workers", live, {"scraper:{video-list}:tasks": ">"}, count=5)
        admin.close()
        assert len(stolen[0][1]) == 5
        assert pod.wait(timeout=120) == 0
        _, stderr = pod.communicate()
    assert "pending under our name that we do not hold" in stderr
    final = stats_json(redis_url, c.env)
    assert (final["queued"], final["in_flight"], final["delayed"]) == (0, 0, 0)
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)
