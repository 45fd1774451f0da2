"""`scraper export`'s peak memory does not grow with the number of comments.

Each export runs in its own process (the real command, the budget forced by
its setting) that reports its peak RSS: four times the comments must not cost
more memory. The old exporter (a set of every rpid) grew ~70 B a comment: +8 MB
from N to 4N here.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import REPO, cli_env

COMMENTS = 40_000
BUDGET_MB = 2

# The child reports its peak RSS (VmHWM: this process's own, while ru_maxrss
# would include the parent's at fork time) before and after the export.
_PEAK = (
    "import re, sys\n"
    "def peak_kb():\n"
    "    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
    # What the command loads before the export's own work (the CLI imports command modules lazily).
    "import scraper.commands, scraper.commands.common, scraper.commands.export, scraper.export\n"
    "import scraper.settings\n"
    "from scraper.cli import main\n"
    "before = peak_kb()\n"
    "code = main(sys.argv[1:])\n"
    "print('peak_kb', before, peak_kb(), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _shards(output_dir: Path, comments: int) -> None:
    """Four shards, 5% of the comments twice (a re-fetched page), ~270 B a line."""
    folder = output_dir / "video-list"
    folder.mkdir(parents=True)
    rng = random.Random(comments)
    shards = [bytearray() for _ in range(4)]
    for index in range(comments):
        line = orjson.dumps({"rpid": 10**9 + index * 7, "oid": 170001 + index // 5000, "bvid": "BV17x411w7KC",
                             "root": 0, "parent": 0, "mid": rng.randrange(10**8), "uname": f"user{index % 9999}",
                             "level": 3, "message": "comment " + "x" * rng.randrange(60, 140), "ctime": 1_700_000_000,
                             "like": 0, "rcount": 0, "crawled_at": 1_700_000_000_000 + index}) + b"\n"  # fmt: skip
        shards[index % 4] += line
        if index % 20 == 0:
            shards[(index + 1) % 4] += line
    for number, data in enumerate(shards):
        (folder / f"pod-{number}.jsonl").write_bytes(data)


def _export_peak_mb(tmp_path: Path, comments: int) -> tuple[float, float]:
    """(peak RSS before the export, peak RSS after it) of `scraper export`, in MB."""
    out = tmp_path / f"out-{comments}"
    _shards(out, comments)
    destination = tmp_path / f"all-{comments}.jsonl"
    env = cli_env(tmp_path, SCRAPER_WORKER_EXPORT_MEMORY_MB=str(BUDGET_MB))
    result = subprocess.run(
        [sys.executable, "-c", _PEAK, "export", "--target", "video-list", "--output-dir", str(out),
         "--output", str(destination)],  # fmt: skip
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{comments} comments" in result.stdout
    assert sum(1 for _ in destination.open("rb")) == comments
    before, after = result.stderr.split("peak_kb")[1].split()[:2]
    return int(before) / 1024, int(after) / 1024


def test_export_memory_does_not_grow_with_the_comments(tmp_path: Path) -> None:
    small = _export_peak_mb(tmp_path, COMMENTS)  # ~10 MB of shards
    large = _export_peak_mb(tmp_path, 4 * COMMENTS)  # ~40 MB of shards
    assert large[1] - small[1] < 2, (small, large)  # the old exporter: +8 MB
    for before, after in (small, large):
        assert after - before < BUDGET_MB + 2, (small, large)  # the budget, plus allocator slack
