"""The queue's Redis: durable (AOF only, fsync always), never evicting, hard to evict."""

from __future__ import annotations

import copy
import re

import pytest

from tests.k8s.support import (
    ALL_RENDERS,
    EXTERNAL_SECRET,
    Obj,
    cpu_cores,
    environment,
    generated,
    main_container,
    memory_bytes,
    one,
    pod_labels,
    pod_spec,
    redis,
    redis_bytes,
    worker,
)


def redis_config(objects: list[Obj]) -> dict[str, str]:
    """The directives of the redis.conf the container starts with (last one wins, like Redis)."""
    container = main_container(redis(objects))
    script = " ".join(container["args"])
    match = re.search(r"exec redis-server (\S+)", script)
    assert match, f"the container does not exec redis-server with a config file: {script!r}"
    directory, _, filename = match.group(1).rpartition("/")
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in pod_spec(redis(objects))["volumes"] if v["name"] == mount["name"])
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    directives: dict[str, str] = {}
    for line in config_map["data"][filename].splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            directives[key.lower()] = value.strip()
    return directives


def redis_problems(objects: list[Obj]) -> list[str]:
    problems = []
    config = redis_config(objects)
    wanted = {"appendonly": "yes", "appendfsync": "always", "save": '""', "maxmemory-policy": "noeviction"}
    for key, value in wanted.items():
        if config.get(key) != value:
            problems.append(f"redis.conf: {key} is {config.get(key)!r}, wants {value}")
    container = main_container(redis(objects))
    resources = container["resources"]
    for kind in ("cpu", "memory"):
        # Guaranteed QoS: the last pod the kubelet evicts under memory pressure.
        if resources["requests"][kind] != resources["limits"][kind]:
            requested, limit = resources["requests"][kind], resources["limits"][kind]
            problems.append(f"redis {kind}: requests {requested} != limits {limit}")
    budgets = [
        b
        for b in objects
        if b["kind"] == "PodDisruptionBudget"
        and b["spec"]["selector"]["matchLabels"].items() <= pod_labels(redis(objects)).items()
    ]
    if not budgets or budgets[0]["spec"].get("maxUnavailable") != 0:
        problems.append("no PodDisruptionBudget keeps the single Redis from being evicted implicitly")
    return problems


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_redis_is_a_durable_queue(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    assert redis_problems(objects) == []
    statefulset = redis(objects)
    container = main_container(statefulset)
    config = redis_config(objects)
    env = {e["name"]: e for e in container["env"]}
    maxmemory = re.search(r"--maxmemory \"?\$(\w+)", " ".join(container["args"]))
    assert maxmemory, "maxmemory comes from REDIS_MAXMEMORY"
    limit = memory_bytes(container["resources"]["limits"]["memory"])
    assert redis_bytes(env[maxmemory.group(1)]["value"]) < limit, "Redis must refuse writes before the kernel kills it"
    assert cpu_cores(container["resources"]["limits"]["cpu"]) >= 0.25

    assert re.fullmatch(r"redis:7\.2\.\d+", container["image"]), container["image"]
    assert pod_spec(statefulset)["securityContext"]["runAsUser"] == 999
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert "data" in claims and config["dir"] == "/data"
    for probe in ("readinessProbe", "livenessProbe"):
        assert "redis-cli ping" in " ".join(container[probe]["exec"]["command"])


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_redis_reads_its_password_from_the_secret_file(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    statefulset = redis(objects)
    container = main_container(statefulset)
    config = redis_config(objects)
    assert "requirepass" not in config, "the password never sits in a ConfigMap"
    included = config["include"]
    script = container["args"][0]
    # The script writes the included file from the mounted Secret, with
    # builtins only (no password in any argv), readable by Redis alone.
    assert "umask 077" in script
    read = re.search(r"read -r (\w+) < (\S+)", script)
    assert read, script
    assert f'printf \'requirepass "%s"\\n\' "${read.group(1)}" > {included}' in script
    secret_file = read.group(2)
    directory, _, key = secret_file.rpartition("/")
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    assert mount.get("readOnly") is True
    volume = next(v for v in pod_spec(statefulset)["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"].startswith(EXTERNAL_SECRET)  # dev: plus kustomize's hash suffix
    assert {"key": "redis-password", "path": key} in volume["secret"]["items"]
    assert included.startswith("/tmp/")  # the writable emptyDir
    assert not [e for e in container["env"] if "valueFrom" in e], "no secret in Redis's environment"
    for probe in ("readinessProbe", "livenessProbe"):
        assert f"read -r REDISCLI_AUTH < {secret_file}" in " ".join(container[probe]["exec"]["command"])
    assert generated(objects, "ConfigMap", "scraper-redis-config")


def test_redis_check_catches_rdb_everysec_and_burstable(renders: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(renders["prod"])
    config_map = generated(broken, "ConfigMap", "scraper-redis-config")
    config_map["data"]["redis.conf"] = (
        config_map["data"]["redis.conf"]
        .replace('save ""', "save 3600 1")
        .replace("appendfsync always", "appendfsync everysec")
    )
    main_container(redis(broken))["resources"]["requests"]["cpu"] = "500m"
    broken = [o for o in broken if o["kind"] != "PodDisruptionBudget" or o["metadata"]["name"] != "scraper-redis"]
    problems = redis_problems(broken)
    assert any("save" in p for p in problems), problems
    assert any("appendfsync" in p for p in problems), problems
    assert any("redis cpu" in p for p in problems), problems
    assert any("PodDisruptionBudget" in p for p in problems), problems


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_workers_fsync_before_they_acknowledge(name: str, renders: dict[str, list[Obj]]) -> None:
    # Half of the durability story: Redis fsyncs the acknowledgement, the
    # worker must have fsynced the lines it acknowledges.
    objects = renders[name]
    env = environment(main_container(worker(objects)), objects)
    assert env["SCRAPER_WORKER_FSYNC"] == "true"
