"""Output that cannot take more lines: a full disk (a 6 MB tmpfs), a file-size limit (RLIMIT_FSIZE).

The worker stops claiming, hands back every unsettled page, says in one line
which path failed and why, and exits 1; a rerun after the disk is fixed
completes and the export is exact.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults_support import crawl
from tests.helpers import REPO, SCRAPER, assert_exported_exactly, run_cli, stats_json

WORK = ["--processes", "2", "--concurrency", "16", "--rate-limit", "0"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs as the output folder (the test runs as root), unmounted afterwards."""
    out = tmp_path / "out"
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(out)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr!r}"
    try:
        yield out
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def _remount(out: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(out)], check=True)


@pytest.mark.parametrize("fault", ["enospc", "efbig"])
def test_output_failure_hands_back_and_exits_1(tmp_path: Path, redis_url: str, small_disk: Path, fault: str) -> None:
    with crawl(tmp_path, redis_url, seed=31, videos=12, comments=30000) as c:
        assert c.out == small_disk
        args = ["work", *c.common, *WORK, "--burst", "--output-dir", str(c.out)]
        if fault == "enospc":
            failed = run_cli(args, c.env, timeout=120)
            cause = "No space left on device (ENOSPC)"
        else:  # every file of the worker limited to 2 MB: the shard outgrows it
            failed = subprocess.run(["prlimit", "--fsize=2000000", "--", *SCRAPER, *args], env=c.env, cwd=REPO,
                                    capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
            cause = "File too large (EFBIG)"
        code, stderr = failed.returncode, failed.stderr
        assert code == 1, stderr
        lines = [line for line in stderr.splitlines() if cause in line]
        assert lines and str(c.out / "video-list") in lines[0], stderr
        assert "handed back every unsettled page" in stderr
        assert "Traceback" not in stderr
        held = stats_json(redis_url, c.env)
        assert held["in_flight"] == 0 and held["queued"] > 0, stderr  # nothing stuck pending, the rest is queued

        # The operator fixes the disk; a rerun completes.
        _remount(small_disk, "rw,size=200m")
        rerun = run_cli(args, c.env, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
    final = stats_json(redis_url, c.env)
    assert (final["queued"], final["in_flight"], final["delayed"], final["dead"]) == (0, 0, 0, 0)
    assert_exported_exactly(tmp_path, c.common, c.out, c.env, c.expected)
