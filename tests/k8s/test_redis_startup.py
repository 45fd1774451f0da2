"""The Redis container's start-up script and redis.conf, run for real here.

The manifest's script is taken from the rendered StatefulSet and run with
sh against the real redis-server, with its paths moved into a temporary
folder: Redis must start with the password from the Secret file, never show
it on a command line, run with the shipped durability settings, and refuse
to start without a password.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tests.k8s.support import Obj, main_container, one, pod_spec
from tests.k8s.support import redis as redis_statefulset

PASSWORD = "0123456789abcdef0123456789abcdef"


def startup(objects: list[Obj], tmp_path: Path, password: str) -> tuple[subprocess.Popen[bytes], int]:
    statefulset = redis_statefulset(objects)
    container = main_container(statefulset)
    assert container["command"] == ["sh", "-c"]
    script = container["args"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    config_map = one(objects, "ConfigMap", volumes["config"]["configMap"]["name"])
    (secret_item,) = volumes["auth"]["secret"]["items"]

    port = free_port()
    paths = {mount: tmp_path / name for name, mount in mounts.items()}
    for path in paths.values():
        path.mkdir()
    # Every mount path, where it starts a path, moved into tmp_path in one pass.
    mounted = re.compile(
        r"(?<![\w/])(" + "|".join(re.escape(m) for m in sorted(paths, key=len, reverse=True)) + r")(?=/|\s|$)",
        re.MULTILINE,
    )

    def moved(text: str) -> str:
        return mounted.sub(lambda match: str(paths[match.group(1)]), text)

    for filename, text in config_map["data"].items():
        text = moved(text).replace("port 6379", f"port {port}\nbind 127.0.0.1")
        (paths[mounts["config"]] / filename).write_text(text)
    (paths[mounts["auth"]] / secret_item["path"]).write_text(password)
    script = moved(script)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "REDIS_MAXMEMORY": "64mb"}
    process = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return process, port


def wait_for(port: int, process: subprocess.Popen[bytes]) -> redis.Redis:
    client = redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def test_redis_starts_with_the_password_from_the_file(renders: dict[str, list[Obj]], tmp_path: Path) -> None:
    process, port = startup(renders["prod"], tmp_path, PASSWORD)
    try:
        client = wait_for(port, process)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("maxmemory") == {"maxmemory": str(64 * 2**20)}
        # exec: redis-server is the script's own process (PID 1 in the pod, gets SIGTERM).
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert cmdline.startswith("redis-server")
        assert PASSWORD not in cmdline
        assert PASSWORD not in Path(f"/proc/{process.pid}/environ").read_bytes().decode(errors="replace")
        auth_file = tmp_path / "tmp" / "redis-auth.conf"
        assert auth_file.stat().st_mode & 0o077 == 0, "only Redis's user may read the password file"
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_refuses_to_start_without_a_password(renders: dict[str, list[Obj]], tmp_path: Path) -> None:
    process, _ = startup(renders["prod"], tmp_path, "")
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 1
    assert b"redis-password is empty" in stderr
