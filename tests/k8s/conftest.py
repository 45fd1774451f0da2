"""The rendered overlays, once per test session (kustomize takes a while)."""

from __future__ import annotations

import pytest

from tests.k8s.support import COMPONENT_OVERLAYS, OVERLAYS, Obj, kustomize, temporary_overlay


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    out = {name: kustomize(path) for name, path in OVERLAYS.items()}
    for name, (overlay, component) in COMPONENT_OVERLAYS.items():
        directory = temporary_overlay(tmp_path_factory.mktemp(name), [overlay], [component])
        out[name] = kustomize(directory, unrestricted=True)
    return out
