"""The code stays ruff-clean, formatted and mypy --strict clean (config in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHECKED = ["scraper", "workers", "tests", "benchmarks"]  # mypy: the files pyproject.toml names


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "ruff"), "check", *CHECKED],
        [str(BIN / "ruff"), "format", "--check", *CHECKED],
        [str(BIN / "mypy")],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
