"""A shard is never appended to by a later process, whatever its pid and host name.

A restarted container has the same host name and, in a fresh PID namespace,
the same pids: shard names carry the start time and a random part, so the
new process never writes into a file an old one cut mid-line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from scraper.sinks import JsonlSink, OutputFailure, shard_path
from tests.faults_support import crawl
from tests.helpers import REPO, SCRAPER, STARTED, assert_exported_exactly, stats_json, wait_for


def test_shard_names_are_unique_per_start(tmp_path: Path) -> None:
    first, second = shard_path(tmp_path, "t", 0), shard_path(tmp_path, "t", 0)
    assert first != second and first.parent == second.parent == tmp_path / "t"
    assert re.fullmatch(r".+-\d+-\d{13}-[0-9a-f]{6}-0\.jsonl", first.name)
    sink = JsonlSink(first)
    sink.write([{"rpid": 1}])
    sink.close()
    with pytest.raises(OutputFailure, match="cannot open output shard"):
        JsonlSink(first)  # never appended to: an existing shard is someone else's
    assert first.read_bytes() == b'{"rpid":1}\n'


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, check=False).returncode == 0


def _start_in_pid_namespace(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--", *SCRAPER, *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    STARTED.append(proc)
    return proc


def _shards(stderr: str) -> dict[str, str]:
    """shard path -> the pid in its name, from the children's start lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"output (\S+?-(\d+)-\d{13}-\w+-\d\.jsonl)", stderr)}


@pytest.mark.skipif(not _unshare_works(), reason="unshare --pid is not permitted here")
def test_container_restart_in_a_fresh_pid_namespace(tmp_path: Path, redis_url: str) -> None:
    """kill -9 of a 'container' (a PID namespace), a new one with the same pids: no shard shared."""
    with crawl(tmp_path, redis_url, seed=41, videos=10, comments=6000, sim=("--latency-ms", "100")) as c:
        args = ["work", *c.common, "--processes", "2", "--concurrency", "8", "--rate-limit", "0", "--claim-idle", "600",
                "--output-dir", str(c.out)]  # fmt: skip
        first = _start_in_pid_namespace(args, c.env)
        wait_for(lambda: stats_json(redis_url, c.env)["pages_done"] >= 40, timeout=60)
        os.killpg(first.pid, signal.SIGKILL)
        first_log = first.communicate(timeout=10)[1]
        second = _start_in_pid_namespace([*args, "--burst"], c.env)
        _, second_log = second.communicate(timeout=180)
        assert second.returncode == 0, second_log
    before, after = _shards(first_log), _shards(second_log)
    assert len(before) == len(after) == 2
    assert set(before.values()) == set(after.values())  # the same pids in both namespaces...
    assert not set(before) & set(after)  # ...and still no shard written by both
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)
