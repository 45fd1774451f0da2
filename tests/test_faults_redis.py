"""One policy per Redis failure class, each met by a running crawl on a real redis-server.

- OOM (``CONFIG SET maxmemory 1``) and READONLY (the server made a replica):
  claiming and fetching pause, nothing is lost, the crawl resumes and ends;
- NOGROUP (``scraper reset --force`` under a running worker): a clean stop;
- any other error (a command denied by ACL): the child exits, is restarted,
  its pages are taken over; the crawl ends exact.

Every case: the exact rpid set, the exit code, and no traceback in the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import redis

from tests.conftest import RedisServer, free_port
from tests.faults_support import Crawl, crawl
from tests.helpers import assert_exported_exactly, run_cli, start_cli, stats_json, wait_for

WORK = ["--processes", "2", "--concurrency", "16", "--rate-limit", "0", "--backoff-base", "0.1"]
SIM = ("--latency-ms", "300")


@contextmanager
def refused_writes(server: RedisServer, how: str) -> Iterator[Callable[[], None]]:
    """Make Redis refuse writes until the yielded function is called (or the block ends)."""
    client = server.client()
    if how == "oom":
        client.config_set("maxmemory", "1")
    else:
        client.replicaof("127.0.0.1", str(free_port()))  # a master that does not exist: read-only

    def restore() -> None:
        if how == "oom":
            client.config_set("maxmemory", "0")
        else:
            client.replicaof("NO", "ONE")

    try:
        yield restore
    finally:
        restore()
        client.close()


def _pages_done(c: Crawl) -> int:
    return int(stats_json(c.redis_url, c.env)["pages_done"])


def _run_through_refusal(tmp_path: Path, redis_server: RedisServer, redis_url: str, how: str) -> None:
    with crawl(tmp_path, redis_url, seed=21, videos=10, comments=20000, sim=SIM) as c:
        pod = start_cli(["work", *c.common, *WORK, "--burst", "--output-dir", str(c.out)], c.env)
        wait_for(lambda: _pages_done(c) >= 40, timeout=60)
        # Far from done: cursor chains reveal their pages as they go, so the queue stays short;
        # ~1,000 pages make the corpus (20 comments a page) and less than half are done.
        assert _pages_done(c) < len(c.expected) / 20 / 2
        before = c.sim_requests()
        with refused_writes(redis_server, how) as restore:
            time.sleep(2.0)  # every consumer has met the refusal by now, and held pages do not settle
            health = run_cli(["health", "--stall", "1"], c.env)
            waiting_for = stats_json(redis_url, c.env)["waiting_for"]
            time.sleep(4.0)
            during = c.sim_requests() - before
            restore()
        assert pod.wait(timeout=180) == 0
        _, stderr = pod.communicate()
    (tmp_path / "work.log").write_text(stderr)
    print(f"{how}: {during} requests sent in the 6 s while Redis refused writes")
    # Waiting for Redis correctly is healthy, even with pages held and no settle.
    assert health.returncode == 0, health.stderr
    # What `stats` and the progress line say the crawl waits for:
    assert waiting_for == ["redis memory full (maxmemory)" if how == "oom" else "redis read-only (a replica)"]
    assert during <= 2 * 16  # at most what was already past the gate, never a crawl going on
    assert "Traceback" not in stderr
    assert 1 <= stderr.count("Redis refuses writes") <= 4  # one line per process and interval
    assert "Redis takes writes again" in stderr
    final = stats_json(redis_url, c.env)
    assert (final["queued"], final["in_flight"], final["delayed"], final["dead"]) == (0, 0, 0, 0)
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def test_out_of_memory_pauses_and_resumes(tmp_path: Path, redis_server: RedisServer, redis_url: str) -> None:
    _run_through_refusal(tmp_path, redis_server, redis_url, "oom")


def test_readonly_replica_pauses_and_resumes(tmp_path: Path, redis_server: RedisServer, redis_url: str) -> None:
    _run_through_refusal(tmp_path, redis_server, redis_url, "readonly")


def test_reset_under_a_running_worker_stops_it_cleanly(tmp_path: Path, redis_url: str) -> None:
    with crawl(tmp_path, redis_url, seed=22, videos=10, comments=5000, sim=SIM) as c:
        pod = start_cli(["work", *c.common, *WORK, "--output-dir", str(c.out)], c.env)
        wait_for(lambda: _pages_done(c) >= 40, timeout=60)
        reset = run_cli(["reset", *c.common, "--force"], c.env)
        assert reset.returncode == 0, reset.stderr
        assert pod.wait(timeout=60) == 0  # not a crash, not a hang, not restarted
        _, stderr = pod.communicate()
        assert "the target was reset under this worker" in stderr
        assert "Traceback" not in stderr and "restarting" not in stderr
        # Start over: the whole crawl again, and the export is exact.
        videos = tmp_path / "videos.txt"
        again = run_cli(["coordinate", *c.common, "--videos", str(videos), "--base-url", c.base_url], c.env)
        assert again.returncode == 0, again.stderr
        finish = run_cli(["work", *c.common, *WORK, "--burst", "--output-dir", str(c.out)], c.env, timeout=180)
        assert finish.returncode == 0, finish.stderr
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def test_unexpected_redis_error_restarts_the_child(tmp_path: Path, redis_server: RedisServer, redis_url: str) -> None:
    """A command the server refuses for no known reason (here: denied by ACL)
    is a bug: the child says so in one line, exits, is restarted, and its pages
    are taken over at once."""
    admin = redis_server.client()
    with crawl(tmp_path, redis_url, seed=23, videos=10, comments=5000, sim=SIM) as c:
        pod = start_cli(["work", *c.common, *WORK, "--burst", "--output-dir", str(c.out)], c.env)
        wait_for(lambda: _pages_done(c) >= 40, timeout=60)
        try:
            # The settle is one script: denying scripts refuses it whole (a script stopped
            # half-way by an error keeps its first writes, so no test should provoke that).
            admin.acl_setuser("default", enabled=True, nopass=True, commands=["-eval", "-evalsha"], reset=False)
            wait_for(lambda: _marked_dead(admin), timeout=30, interval=0.05)
        finally:
            admin.acl_setuser("default", enabled=True, nopass=True, commands=["+@all"], reset=False)
        assert pod.wait(timeout=180) == 0
        _, stderr = pod.communicate()
    admin.close()
    assert "unexpected Redis error, restarting this process" in stderr
    assert "exited with code 1: restarting" in stderr
    assert "Traceback" not in stderr
    final = stats_json(redis_url, c.env)
    assert (final["queued"], final["in_flight"], final["delayed"], final["dead"]) == (0, 0, 0, 0)
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)


def _marked_dead(client: redis.Redis) -> bool:
    beats = client.hgetall("scraper:{video-list}:consumers")
    return any(orjson.loads(raw).get("dead") for raw in beats.values())
