"""The worker, coordinator, refresh and exporter as the design needs them."""

from __future__ import annotations

import copy
import math

import pytest

from scraper.settings import env_layer
from tests.k8s.support import (
    ALL_RENDERS,
    AUTOSCALED,
    CONFIG,
    SCRAPER_ROLES,
    SEEDING_ROLES,
    TARGET,
    Obj,
    by_role,
    containers,
    cpu_cores,
    drain_timeout_s,
    environment,
    find,
    main_container,
    memory_bytes,
    one,
    pod_labels,
    pod_spec,
    role_of,
    worker,
    workloads,
)

# Every scraper role a render may hold; refresh only in the refresh overlay.
ALL_ROLES = (*SCRAPER_ROLES, "refresh")


def roles(objects: list[Obj]) -> list[str]:
    return [r for r in ALL_ROLES if any(role_of(w) == r for w in workloads(objects))]


def worker_replica_problems(objects: list[Obj], autoscaled: bool) -> list[str]:
    replicas = worker(objects)["spec"].get("replicas")
    if autoscaled and replicas is not None:
        return [f"worker Deployment sets replicas={replicas}: it would fight KEDA on every apply"]
    if not autoscaled and replicas != 1:
        return [f"dev worker Deployment must pin replicas: 1 (no KEDA there), has {replicas}"]
    return []


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_worker_replicas_belong_to_keda(name: str, renders: dict[str, list[Obj]]) -> None:
    assert worker_replica_problems(renders[name], autoscaled=name in AUTOSCALED) == []


def test_replica_check_catches_a_pinned_count(renders: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(renders["prod"])
    worker(broken)["spec"]["replicas"] = 3
    assert worker_replica_problems(broken, autoscaled=True)


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_grace_period_outlasts_the_drain(name: str, renders: dict[str, list[Obj]]) -> None:
    deployment = worker(renders[name])
    env = environment(main_container(deployment), renders[name])
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    drain = drain_timeout_s(env)
    # SIGKILL comes grace seconds after SIGTERM; the drain, the final flush
    # and the acknowledgements must fit before it.
    assert grace > drain, f"terminationGracePeriodSeconds {grace} <= drain_timeout_s {drain}"


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_cpu_request_matches_processes(name: str, renders: dict[str, list[Obj]]) -> None:
    container = main_container(worker(renders[name]))
    processes = int(environment(container, renders[name])["SCRAPER_PROCESSES"])
    cores = cpu_cores(container["resources"]["requests"]["cpu"])
    # One process per requested core; a fraction of a core still runs one.
    assert math.ceil(cores) == processes, f"cpu request {cores} cores for {processes} processes"


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_worker_probe_metrics_and_output(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    deployment = worker(objects)
    container = main_container(deployment)
    env = environment(container, objects)
    assert container["args"] == ["work", "--target", TARGET]
    assert container["livenessProbe"]["exec"]["command"] == ["scraper", "health"]
    heartbeat_dir = env.get("SCRAPER_WORKER_HEARTBEAT_DIR", "/tmp/scraper-heartbeat")
    assert heartbeat_dir.startswith("/tmp/"), "heartbeats must live on the writable /tmp"

    port = int(env["SCRAPER_WORKER_METRICS_PORT"])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    service = one(objects, "Service", "scraper-worker-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics"}]
    assert port == 9100

    if name == "object-storage":  # checked below: no volume at all
        assert env["SCRAPER_OUTPUT_DIR"].startswith("s3://")
        return
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    assert env["SCRAPER_OUTPUT_DIR"].startswith("/data/")
    modes = one(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"]
    # Many worker pods write shards side by side; only dev (one pod) may use RWO.
    assert modes == (["ReadWriteOnce"] if name == "dev" else ["ReadWriteMany"])


def rwx_dependencies(objects: list[Obj]) -> list[str]:
    """Deployments that mount a claim asking for ReadWriteMany (or a claim not in the render)."""
    claims = {c["metadata"]["name"]: c["spec"].get("accessModes", []) for c in find(objects, "PersistentVolumeClaim")}
    problems = []
    for deployment in find(objects, "Deployment"):
        for volume in pod_spec(deployment).get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim is None:
                continue
            modes = claims.get(claim)
            if modes is None or "ReadWriteMany" in modes:
                problems.append(f"{deployment['metadata']['name']} mounts {claim} ({modes or 'not rendered'})")
    return problems


def test_no_deployment_depends_on_an_rwx_claim_in_the_object_storage_overlay(
    renders: dict[str, list[Obj]],
) -> None:
    objects = renders["object-storage"]
    assert rwx_dependencies(objects) == []
    assert find(objects, "PersistentVolumeClaim") == []  # nothing left to stay Pending on a block-storage class
    env = environment(main_container(worker(objects)), objects)
    assert env["SCRAPER_OUTPUT_DIR"].startswith("s3://")
    # The same check finds the shared volume of the RWX layout.
    assert rwx_dependencies(renders["prod"]) == ["scraper-worker mounts scraper-output (['ReadWriteMany'])"]


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_manifest_environment_is_known_to_the_settings(name: str, renders: dict[str, list[Obj]]) -> None:
    # A misspelled SCRAPER_* variable is ignored by the settings loader: the
    # knob silently keeps its default.
    for role in roles(renders[name]):
        container = main_container(by_role(renders[name], role))
        env = environment(container, renders[name])
        for key in env:
            if key.startswith("SCRAPER_") and key != "SCRAPER_CONFIG_DIR":
                assert env_layer({key: "x"}), f"{role}: {key} is not a setting"
        assert env["SCRAPER_CONFIG_DIR"] == "/app/config"
        assert env["SCRAPER_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@scraper-redis:6379/0"
        names = [item["name"] for item in container["env"]]
        assert names.index("REDIS_PASSWORD") < names.index("SCRAPER_REDIS_URL"), (
            "$(REDIS_PASSWORD) only expands when defined earlier in the list"
        )


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_container_has_requests_and_limits(name: str, renders: dict[str, list[Obj]]) -> None:
    for workload in workloads(renders[name]):
        for container in containers(pod_spec(workload)):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert set(resources.get(kind, {})) >= {"cpu", "memory"}, f"{where}: {kind}"
            assert cpu_cores(resources["requests"]["cpu"]) <= cpu_cores(resources["limits"]["cpu"]), where
            assert memory_bytes(resources["requests"]["memory"]) <= memory_bytes(resources["limits"]["memory"]), where


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_one_pinned_image_for_every_scraper_role(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    images = {role: main_container(by_role(objects, role))["image"] for role in roles(objects)}
    assert len(set(images.values())) == 1, images
    image = images["worker"]
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{image} has no tag"
    assert tag != "latest"


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_coordinator_and_exporter(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    job = one(objects, "Job", "scraper-coordinator")
    assert main_container(job)["args"] == ["coordinate", "--target", TARGET]
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
    assert (CONFIG / "targets" / f"{TARGET}.toml").is_file()

    exporter = one(objects, "Deployment", "scraper-exporter")
    container = main_container(exporter)
    args = container["args"]
    assert args[0] == "exporter"
    port = int(args[args.index("--port") + 1])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    assert exporter["spec"]["replicas"] == 1
    service = one(objects, "Service", "scraper-exporter")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9101, "targetPort": "metrics"}]


def exporter_probe_problems(objects: list[Obj]) -> list[str]:
    """The exporter's liveness must not depend on Redis (scraper/exporter.py)."""
    container = main_container(one(objects, "Deployment", "scraper-exporter"))
    problems = []
    liveness = container.get("livenessProbe", {})
    if liveness.get("httpGet", {}).get("path") != "/healthz":
        problems.append(f"exporter liveness is {liveness}: only /healthz leaves Redis alone")
    if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append("exporter readiness must be /readyz (Redis PING)")
    return problems


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_exporter_probes_do_not_call_redis(name: str, renders: dict[str, list[Obj]]) -> None:
    assert exporter_probe_problems(renders[name]) == []


def test_exporter_probe_check_catches_a_metrics_liveness(renders: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(renders["prod"])
    main_container(one(broken, "Deployment", "scraper-exporter"))["livenessProbe"]["httpGet"]["path"] = "/metrics"
    assert exporter_probe_problems(broken)


def test_refresh_cronjob_runs_the_refresh_against_the_same_redis(renders: dict[str, list[Obj]]) -> None:
    objects = renders["refresh"]
    (cron,) = find(objects, "CronJob")
    container = main_container(cron)
    assert container["args"] == ["coordinate", "--target", TARGET, "--refresh"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid", "two refreshes at once would both enqueue"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] <= 2
    assert pod_spec(cron)["restartPolicy"] in ("OnFailure", "Never")
    coordinator = main_container(by_role(objects, "coordinator"))
    # Same Redis, same settings: the URL and where the password comes from.
    url = environment(container, objects)["SCRAPER_REDIS_URL"]
    assert url == environment(coordinator, objects)["SCRAPER_REDIS_URL"]
    password = {e["name"]: e for e in container["env"]}["REDIS_PASSWORD"]
    assert password == {e["name"]: e for e in coordinator["env"]}["REDIS_PASSWORD"]
    assert [e["name"] for e in container["env"]] == ["REDIS_PASSWORD", "SCRAPER_REDIS_URL"], "only what it needs"
    # The workers it wakes are the KEDA-scaled prod ones.
    assert find(objects, "ScaledObject", "scraper-worker")
    for role in SEEDING_ROLES:
        assert role in roles(objects)


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_services_select_pods_and_ports_that_exist(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    for service in find(objects, "Service"):
        selector = service["spec"]["selector"]
        matched = [w for w in workloads(objects) if selector.items() <= pod_labels(w).items()]
        assert matched, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in matched:
                ports = [p for c in containers(pod_spec(workload)) for p in c.get("ports", [])]
                assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (
                    f"Service {service['metadata']['name']}: {workload['metadata']['name']} has no port {target}"
                )
    for workload in workloads(objects):
        if "selector" in workload["spec"] and workload["kind"] not in ("Job", "CronJob"):
            labels = workload["spec"]["selector"]["matchLabels"]
            assert labels.items() <= pod_labels(workload).items(), workload["metadata"]["name"]


def test_disruption_budget_covers_the_workers(renders: dict[str, list[Obj]]) -> None:
    objects = renders["prod"]
    budget = one(objects, "PodDisruptionBudget", "scraper-worker")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(worker(objects)).items()
    # minAvailable would block node drains whenever KEDA runs a single worker.
    assert "minAvailable" not in budget["spec"]
