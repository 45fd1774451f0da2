"""Restricted pods everywhere; secrets only where needed and never on a command line."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.k8s.support import (
    ALL_RENDERS,
    SEEDING_ROLES,
    Obj,
    by_role,
    containers,
    main_container,
    pod_spec,
    redis,
    role_of,
    worker,
    workloads,
)


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


def secret_exposure_problems(objects: list[Obj]) -> list[str]:
    """A password never on a command line; the seeding roles get no cookie.

    A command line is world-readable on the node (`ps`, /proc/PID/cmdline);
    Kubernetes expands $(VAR) in command and args, so a secret env var named
    there ends up on it.
    """
    problems = []
    for workload in workloads(objects):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        for container in containers(pod_spec(workload)):
            secret_vars = {
                item["name"] for item in container.get("env", []) if "secretKeyRef" in item.get("valueFrom", {})
            }
            words = [*container.get("command", []), *container.get("args", [])]
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                words += container.get(probe, {}).get("exec", {}).get("command", [])
            for word in words:
                for name in secret_vars:
                    if f"$({name})" in word:
                        problems.append(f"{where}: secret {name} on a command line: {word!r}")
                if "requirepass" in word and "printf" not in word:
                    problems.append(f"{where}: requirepass on a command line")
            if role_of(workload) in SEEDING_ROLES:
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef", {})
                    if item["name"] == "SCRAPER_COOKIE" or ref.get("key") == "cookie":
                        problems.append(f"{where}: gets the cookie though it fetches nothing")
                if any("secretRef" in source for source in container.get("envFrom", [])):
                    problems.append(f"{where}: takes a whole Secret as environment")
    return problems


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_pod_is_restricted(name: str, renders: dict[str, list[Obj]]) -> None:
    assert pod_security_problems(renders[name]) == []


def test_security_check_catches_a_writable_root(renders: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(renders["prod"])
    del main_container(worker(broken))["securityContext"]["readOnlyRootFilesystem"]
    pod_spec(redis(broken))["securityContext"]["runAsUser"] = 0
    problems = pod_security_problems(broken)
    assert any("scraper-worker" in p and "root filesystem" in p for p in problems), problems
    assert any("scraper-redis" in p and "runAsUser" in p for p in problems), problems


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_no_secret_on_a_command_line_and_no_cookie_for_seeding(name: str, renders: dict[str, list[Obj]]) -> None:
    assert secret_exposure_problems(renders[name]) == []


def test_secret_check_catches_requirepass_and_a_cookie(renders: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(renders["refresh"])
    container = main_container(redis(broken))
    container["env"].append({"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
    container["args"] = ["--requirepass", "$(REDIS_PASSWORD)"]
    for role in SEEDING_ROLES:
        main_container(by_role(broken, role))["env"].append(
            {"name": "SCRAPER_COOKIE", "valueFrom": {"secretKeyRef": {"name": "scraper-secrets", "key": "cookie"}}}
        )
    problems = secret_exposure_problems(broken)
    assert any("REDIS_PASSWORD on a command line" in p for p in problems), problems
    assert any("requirepass on a command line" in p for p in problems), problems
    assert sum("cookie" in p for p in problems) == len(SEEDING_ROLES), problems
