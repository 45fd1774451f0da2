"""Running the real `scraper` command and the simulator as subprocesses."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
SCRAPER = [sys.executable, "-m", "scraper.cli"]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment minus SCRAPER_*, with private state folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPER_")}
    env.update(
        {
            "SCRAPER_CONFIG_DIR": str(CONFIG),
            "SCRAPER_REDIS_STATE_DIR": str(tmp_path / "state"),
            "SCRAPER_WORKER_HEARTBEAT_DIR": str(tmp_path / "heartbeat"),
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRAPER, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO, check=False
    )


STARTED: list[subprocess.Popen[str]] = []  # killed (with their groups) after each test


def start_cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*SCRAPER, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or REPO,
        start_new_session=True,  # its own process group: kill -9 of the group stays in the test
    )
    STARTED.append(proc)
    return proc


def kill_started() -> None:
    """A failing test must not leave workers retrying a Redis that is gone."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def simulator(env: dict[str, str], *args: str) -> Iterator[str]:
    """`scraper simulate` on a free port; yields its base URL."""
    proc = subprocess.Popen(
        [*SCRAPER, "simulate", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "simulator did not start"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def exported_rpids(path: Path) -> list[int]:
    return [orjson.loads(line)["rpid"] for line in path.read_bytes().splitlines() if line]


def stats_json(redis_url: str, env: dict[str, str], target: str = "video-list") -> dict:
    result = run_cli(["stats", "--target", target, "--redis-url", redis_url, "--json"], env)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def wait_for(predicate, timeout: float, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll until the predicate answers something true; return that answer."""
    deadline = time.monotonic() + timeout
    while not (answer := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return answer


def worker_children(supervisor_pid: int, heartbeat_dir: Path) -> list[int]:
    """PIDs of the supervisor's live worker processes: its descendants that keep a
    heartbeat (workers are forked by the supervisor's forkserver, so they are
    grandchildren; the forkserver and the resource tracker keep no heartbeat)."""
    children: set[int] = set()
    parents = [supervisor_pid]
    while parents:
        parent = parents.pop()
        try:
            for task in Path(f"/proc/{parent}/task").iterdir():
                found = {int(pid) for pid in (task / "children").read_text().split()}
                parents.extend(found - children)
                children.update(found)
        except FileNotFoundError:
            continue
    beating = {int(path.stem.rsplit("-", 2)[1]) for path in heartbeat_dir.glob("*.beat")}
    return sorted(pid for pid in children & beating if _alive(pid))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def coordinate(env: dict[str, str], common: list[str], videos: Path, base_url: str) -> None:
    result = run_cli(["coordinate", *common, "--videos", str(videos), "--base-url", base_url], env)
    assert result.returncode == 0, result.stderr


def assert_exported_exactly(
    tmp_path: Path, common: list[str], out: Path, env: dict[str, str], expected: set[int]
) -> subprocess.CompletedProcess[str]:
    """`scraper export`, then what a user checks: every expected comment id, none twice."""
    export_file = tmp_path / "all.jsonl"
    exported = run_cli(["export", *common, "--output-dir", str(out), "--output", str(export_file)], env)
    assert exported.returncode == 0, exported.stderr
    rpids = exported_rpids(export_file)
    assert len(rpids) == len(set(rpids))
    assert set(rpids) == expected
    return exported
