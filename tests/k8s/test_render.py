"""Every kustomization renders, validates strictly, and its references resolve."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.support import (
    ALL_RENDERS,
    CLUSTER_SCOPED,
    COMPONENT_OVERLAYS,
    CONFIG,
    EXTERNAL_SECRET,
    K8S,
    NAMESPACE,
    OVERLAYS,
    SCRAPER_ROLES,
    Obj,
    by_role,
    containers,
    environment,
    find,
    main_container,
    one,
    pod_spec,
    validation_problems,
    worker,
    workloads,
)


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
    scaled["spec"]["triggers"][1]["metadata"]["streamLenght"] = "10"
    problems = validation_problems(broken, tmp_path)
    assert any("200 is not of type 'string'" in p for p in problems), problems
    assert any("streamLenght" in p for p in problems), problems


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
def test_cluster_settings_are_never_applied(name: str, renders: dict[str, list[Obj]]) -> None:
    # local-config: kustomize uses it for the replacements, then drops it.
    assert not find(renders[name], "ConfigMap", "cluster-settings")


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
            if "secret" in volume:
                for item in volume["secret"].get("items", []):
                    secret_key(volume["secret"]["secretName"], item["key"], f"{where} volume {volume['name']}")
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


@pytest.mark.parametrize(
    ("name", "roles"), [("repo-config", SCRAPER_ROLES), ("refresh-repo-config", (*SCRAPER_ROLES, "refresh"))]
)
def test_repo_config_component_mounts_every_config_file(
    name: str, roles: tuple[str, ...], renders: dict[str, list[Obj]]
) -> None:
    objects = renders[name]
    config_map = [c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("scraper-config-")]
    assert len(config_map) == 1
    data = config_map[0]["data"]
    files = {p.relative_to(CONFIG).as_posix(): p.read_text() for p in shipped_files(CONFIG)}
    for role in roles:
        workload = by_role(objects, role)
        container = main_container(workload)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/app/config")
        volume = next(v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == config_map[0]["metadata"]["name"], role
        mounted = {item["path"]: data[item["key"]] for item in volume["configMap"]["items"]}
        assert mounted == files, f"{role}: /app/config differs from config/ (a new file needs a line in the component)"
        assert environment(container, objects)["SCRAPER_CONFIG_DIR"] == mount["mountPath"]


def shipped_files(folder: Path) -> list[Path]:
    """The files the repository ships in ``folder`` (what git tracks), not whatever a user added
    there, as README invites for config/targets/ (outside a git checkout: every file)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--", "."], cwd=folder, capture_output=True, timeout=30, check=False
    )
    if listing.returncode != 0:
        return [p for p in folder.rglob("*") if p.is_file()]
    return [folder / name for name in listing.stdout.decode().split("\0") if name]
