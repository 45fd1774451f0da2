"""The embedded redis-server: started and stopped through the real CLI, trusted only when ours.

And the one path rule: a project's embedded Redis state and output live
under its root (the folder holding the config dir), wherever the command
runs from.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from scraper import redis_conn
from scraper.errors import RuntimeFailure
from tests.helpers import CONFIG, cli_env, exported_rpids, run_cli


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp dir the long-path fallback uses, private to this test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(folder))
    return folder


def _deep(tmp_path: Path) -> Path:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    return deep


def test_long_state_path_gets_a_private_socket_folder(tmp_path: Path, private_tmp: Path) -> None:
    redis_dir = _deep(tmp_path) / "redis"
    sock = redis_conn.socket_path(redis_dir)
    assert sock.parent.parent == private_tmp
    info = os.lstat(sock.parent)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert redis_conn.socket_path(redis_dir) == sock  # the next command finds the same one


def test_a_socket_folder_others_can_write_is_refused(tmp_path: Path, private_tmp: Path) -> None:
    redis_dir = _deep(tmp_path) / "redis"
    planted = redis_conn.socket_path(redis_dir).parent
    planted.chmod(0o777)  # as if someone else had created it first, open to all
    with pytest.raises(RuntimeFailure, match="not a private folder of this user"):
        redis_conn.socket_path(redis_dir)


def test_a_socket_folder_that_is_a_symlink_is_refused(tmp_path: Path, private_tmp: Path) -> None:
    redis_dir = _deep(tmp_path) / "redis"
    real = redis_conn.socket_path(redis_dir).parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    real.rmdir()
    real.symlink_to(elsewhere)
    with pytest.raises(RuntimeFailure, match="not a private folder"):
        redis_conn.socket_path(redis_dir)


def test_something_else_at_the_socket_path_is_never_talked_to(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    sock.write_text("not a socket")
    with pytest.raises(RuntimeFailure, match="not a socket of this user"):
        redis_conn.probe(sock)


def test_a_stale_socket_answers_down_at_once(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.close()  # the file stays, nobody listens: a killed server's socket
    assert redis_conn.probe(sock) == "down"
    assert redis_conn.probe(tmp_path / "absent.sock") == "down"


def test_start_status_stop_through_the_cli(tmp_path: Path, private_tmp: Path) -> None:
    state = _deep(tmp_path)  # long enough for the private-folder fallback
    env = cli_env(tmp_path, SCRAPER_REDIS_STATE_DIR=str(state), TMPDIR=str(private_tmp))
    try:
        stopped = run_cli(["redis", "status"], env)
        assert stopped.returncode == 1 and "not running" in stopped.stdout
        assert run_cli(["redis", "stop"], env).stdout.strip() == "embedded redis-server was not running"

        url = run_cli(["redis", "url"], env)
        assert url.returncode == 0, url.stderr
        assert url.stdout.startswith(f"unix://{private_tmp}/scraper-{os.getuid()}-")
        assert "started the embedded redis-server" in url.stderr
        again = run_cli(["redis", "url"], env)
        assert again.stdout == url.stdout and "started" not in again.stderr  # the same server, reused

        running = run_cli(["redis", "status"], env)
        assert running.returncode == 0 and "running" in running.stdout
    finally:
        stop = run_cli(["redis", "stop"], env)
    assert stop.stdout.strip() == "embedded redis-server stopped"
    assert run_cli(["redis", "status"], env).returncode == 1


def test_config_dir_elsewhere_keeps_state_and_output_in_that_project(tmp_path: Path) -> None:
    """One rule: relative paths in the config are relative to the project root (the config dir's parent)."""
    project = tmp_path / "proj"
    shutil.copytree(CONFIG, project / "config")
    (project / "config" / "video-list.txt").write_text("av2\n")
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    env = cli_env(tmp_path)
    for name in ("SCRAPER_CONFIG_DIR", "SCRAPER_REDIS_STATE_DIR"):
        env.pop(name)
    common = ["--config-dir", str(project / "config")]
    try:
        result = run_cli(
            ["run", "--target", "video-list", *common, "--simulate", "always", "--processes", "1"],
            env,
            cwd=elsewhere,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert f"started the embedded redis-server (state in {project / '.state' / 'redis'})" in result.stderr
        output = project / "output" / "simulated" / "video-list.jsonl"  # a simulated run's own namespace
        assert f"-> {output}" in result.stdout
        assert exported_rpids(output)
        assert not any(elsewhere.iterdir())  # nothing lands in the current directory
        status = run_cli(["redis", "status", *common], env, cwd=elsewhere)
        assert status.returncode == 0 and str(project / ".state" / "redis") in status.stdout
    finally:
        run_cli(["redis", "stop", *common], env)
