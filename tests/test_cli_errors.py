"""Bad input gets one clear line (what and where) and the right exit code, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from scraper.keys import TargetKeys
from tests.conftest import free_port
from tests.helpers import cli_env, run_cli


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def test_malformed_video_list_enqueues_nothing(tmp_path: Path, redis_url: str) -> None:
    videos = tmp_path / "videos.txt"
    videos.write_text("BV17x411w7KC\n\n# ok so far\nav2\nBV1nope\n")
    result = run_cli(
        ["coordinate", "--target", "video-list", "--videos", str(videos), "--redis-url", redis_url], cli_env(tmp_path)
    )
    assert result.returncode == 2
    line = _one_line_error(result.stderr)
    assert f"{videos}:5: malformed BV id" in line
    client = redis.Redis.from_url(redis_url)
    assert client.exists(TargetKeys("video-list").tasks) == 0


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (
            ["coordinate", "--target", "video-list", "--videos", "/nonexistent/list.txt"],
            2,
            "/nonexistent/list.txt: video list not found",
        ),
        (["coordinate", "--target", "nope"], 2, "unknown target 'nope'"),
        (
            ["coordinate", "--target", "video-list", "--redis-url", "http://localhost:6379"],
            2,
            "scheme must be redis://",
        ),
        (["coordinate", "--target", "video-list", "--redis-url", "redis://localhost:notaport"], 2, "bad port"),
        (["work", "--target", "video-list", "--base-url", "ftp://x", "--burst"], 2, "base URL 'ftp://x'"),
        (
            ["work", "--target", "video-list", "--processes", "0"],
            2,
            "--processes (worker.processes, SCRAPER_WORKER_PROCESSES) must be at least 1, got 0",
        ),
        (
            ["export", "--target", "video-list", "--output-dir", "/nonexistent-out", "--output", "x.jsonl"],
            2,
            "no output for target",
        ),
        (["work", "--target"], 2, "expected one argument"),
    ],
)
def test_bad_input(tmp_path: Path, redis_url: str, args: list[str], code: int, fragment: str) -> None:
    env = cli_env(tmp_path, SCRAPER_REDIS_URL=redis_url)
    result = run_cli(args, env)
    assert result.returncode == code, result.stderr
    assert fragment in _one_line_error(result.stderr)


def test_unknown_target_lists_known_targets(tmp_path: Path) -> None:
    result = run_cli(["stats", "--target", "nope"], cli_env(tmp_path))
    known = _one_line_error(result.stderr).partition("known targets: ")[2].rstrip(")").split(", ")
    assert "video-list" in known  # what the repository ships; a user's own target files may be listed too


def test_redis_on_a_closed_port_is_reported_at_once(tmp_path: Path) -> None:
    """Nothing listens: a CLI command says so instead of waiting out connect_timeout_s."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli(["coordinate", "--target", "video-list", "--redis-url", dead], cli_env(tmp_path), timeout=30)
    assert result.returncode == 1
    line = _one_line_error(result.stderr)
    assert f"cannot reach Redis at {dead}: nothing listens there" in line


def test_redis_that_does_not_answer_is_a_clear_error_after_a_bounded_wait(tmp_path: Path) -> None:
    """A port that accepts but never answers (a hung server): bounded by connect_timeout_s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        env = cli_env(tmp_path, SCRAPER_REDIS_CONNECT_TIMEOUT_S="1")
        result = run_cli(["coordinate", "--target", "video-list", "--redis-url", url], env, timeout=60)
    assert result.returncode == 1
    assert f"cannot reach Redis at {url} after 1s" in _one_line_error(result.stderr)


def test_a_long_wait_for_redis_is_explained_on_screen(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        env = cli_env(tmp_path, SCRAPER_REDIS_CONNECT_TIMEOUT_S="3")
        result = run_cli(["stats", "--redis-url", url], env, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 2 and f"WARNING waiting for Redis at {url} (no answer), up to 3s" in lines[0], lines
    assert lines[1].startswith(f"scraper: error: cannot reach Redis at {url} after 3s")


def test_password_is_not_printed(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = run_cli(
        ["stats", "--target", "video-list", "--redis-url", url],
        cli_env(tmp_path, SCRAPER_REDIS_CONNECT_TIMEOUT_S="0.5"),
    )
    assert result.returncode == 1
    assert "hunter2" not in result.stderr and ":***@" in result.stderr


def test_output_dir_not_writable(tmp_path: Path, redis_url: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli(
        ["work", "--target", "video-list", "--burst", "--output-dir", str(blocker / "out"), "--redis-url", redis_url],
        cli_env(tmp_path),
    )
    assert result.returncode == 2
    assert f"{blocker / 'out'}: output directory not writable" in _one_line_error(result.stderr)
