"""No message of any command carries a Redis password or the cookie (issue 12, item 8).

Every command runs as a real subprocess with a password in --redis-url and a
cookie in SCRAPER_COOKIE; neither may appear on stdout or stderr, whatever
the failure (closed port, no host, bad port, a server that rejects AUTH).
The exporter does not stop on an unreachable Redis (it serves and retries):
it is asked for /metrics, which logs the Redis it cannot read, then stopped.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scraper.redact import add_secret, redact
from tests.conftest import free_port
from tests.helpers import cli_env, run_cli, start_cli, wait_for

PASSWORD = "Sup3rS3cretPw"
COOKIE_VALUE = "f00dfeed1234abcd"
COOKIE = f"SESSDATA={COOKIE_VALUE}; buvid3=abcdef-123456"

COMMANDS = [
    ["coordinate", "--target", "video-list"],
    ["work", "--target", "video-list", "--burst"],
    ["run", "--target", "video-list", "--simulate", "always"],
    ["stats"],
    ["stats", "--target", "video-list", "--json"],
    ["dead", "list", "--target", "video-list"],
    ["dead", "--target", "video-list", "requeue", "--all"],
    ["dead", "purge", "--target", "video-list"],
    ["reset", "--target", "video-list"],
    ["exporter", "--port", "1"],  # served on a free port instead: see _exporter_output
]


def _urls(redis_url: str) -> list[str]:
    port = free_port()
    live = redis_url.replace("redis://", f"redis://:{PASSWORD}@")
    return [
        f"redis://:{PASSWORD}@127.0.0.1:{port}/0",  # closed port
        f"redis://:{PASSWORD}@host:99999/0",  # bad port
        f"redis://:{PASSWORD}@/0",  # no host
        f"redis://user:{PASSWORD}@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}/0?password={PASSWORD}",
        f"http://:{PASSWORD}@127.0.0.1:{port}/0",  # wrong scheme
        live,  # a real server that has no password: it rejects AUTH
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_no_command_prints_the_password_or_the_cookie(tmp_path: Path, redis_url: str, command: list[str]) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=COOKIE, SCRAPER_REDIS_CONNECT_TIMEOUT_S="1")
    for url in _urls(redis_url):
        args = [*command, "--redis-url", url, "--output-dir", str(tmp_path / "out")]
        if command[0] not in ("work", "run"):
            args = [*command, "--redis-url", url]
        if command[0] == "exporter":
            text = _exporter_output(url, env)
            # It printed the URL it was given (or refused), masked: the line this test is about.
            assert "***" in text, f"{url}: {text}"
        else:
            result = run_cli(args, env, timeout=60)
            text = result.stdout + result.stderr
            assert result.returncode in (1, 2), f"{url}: {text}"
        assert "Traceback" not in text
        assert PASSWORD not in text, f"{command} {url}: {text}"
        assert COOKIE_VALUE not in text and "abcdef-123456" not in text


def _exporter_output(url: str, env: dict[str, str]) -> str:
    """The exporter's output until it refused the URL, or served /metrics from a Redis it cannot read."""
    port = free_port()
    proc = start_cli(["exporter", "--host", "127.0.0.1", "--port", str(port), "--redis-url", url], env)
    answers: list[int] = []

    def refused_or_answered() -> bool:
        if proc.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                answers.append(response.status)
        except urllib.error.HTTPError as exc:
            answers.append(exc.code)
        except OSError:
            return False  # not listening yet
        return True

    wait_for(refused_or_answered, timeout=30)
    if proc.poll() is None:
        assert answers == [503], answers  # Redis cannot be read: said so, and logged
        proc.terminate()
    try:
        stdout, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    text = stdout + stderr
    if not answers:
        assert proc.returncode in (1, 2), f"{url}: {text}"  # refused at start-up: a bad URL
    return text


def test_redact_masks_urls_queries_and_registered_secrets() -> None:
    assert redact("redis://:pw123@host:99999/0") == "redis://:***@host:99999/0"
    assert redact("at redis://user:p@ss:w0rd@h:1/0 now") == "at redis://user:***@h:1/0 now"
    assert redact("'redis://:pw123@/0': no host") == "'redis://:***@/0': no host"
    assert redact("rediss://h:1/0?db=1&password=pw123&x=1") == "rediss://h:1/0?db=1&password=***&x=1"
    assert redact("at redis://h:1/0?password=pw:1: refused") == "at redis://h:1/0?password=***: refused"
    assert redact("redis://user@host:1/0") == "redis://user@host:1/0"  # nothing secret, nothing masked
    add_secret("SESSDATA=0123456789abcdef; buvid3=xyz")
    assert redact("sent Cookie: SESSDATA=0123456789abcdef") == "sent Cookie: SESSDATA=***"


def test_a_successful_run_at_debug_level_never_prints_the_cookie(tmp_path: Path, redis_url: str) -> None:
    videos = tmp_path / "videos.txt"
    videos.write_text("av2\n")
    result = run_cli(
        [
            *["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "always"],
            *["--videos", str(videos), "--output-dir", str(tmp_path / "out"), "--log-level", "DEBUG"],
            *["--processes", "1", "--concurrency", "4"],
        ],
        cli_env(tmp_path, SCRAPER_COOKIE=COOKIE),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "started (uvloop" in result.stderr  # the workers logged at the chatty level too
    assert COOKIE_VALUE not in result.stdout + result.stderr
