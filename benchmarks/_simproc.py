"""A crawl's private surroundings for the one-off benchmark programs (issue10.py, refresh.py).

Each case gets an environment of its own (config from the repository, the
embedded Redis's state and the heartbeats in a temporary folder, no
``SCRAPER_*`` from the caller) and ``scraper simulate`` as its own process on
127.0.0.1, whose address is read from its first lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRAPER = [sys.executable, "-m", "scraper.cli"]


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPER_")}
    env.update(
        SCRAPER_CONFIG_DIR=str(REPO / "config"),
        SCRAPER_REDIS_STATE_DIR=str(root / "state"),
        SCRAPER_WORKER_HEARTBEAT_DIR=str(root / "hb"),
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


@contextlib.contextmanager
def simulator(sim_args: list[str], videos: Path, env: dict[str, str]) -> Iterator[str]:
    """``scraper simulate`` writing its video list to ``videos``; yields its base URL.

    On the way out it stops the simulator and the case's embedded Redis.
    """
    sim = subprocess.Popen(
        [*SCRAPER, "simulate", "--port", "0", "--write-videos", str(videos), *sim_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sim.stdout is not None
        url = ""
        while not url:
            line = sim.stdout.readline()
            if not line:
                raise SystemExit("simulator did not start")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else ""
        yield url
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        subprocess.run([*SCRAPER, "redis", "stop"], env=env, capture_output=True, check=False)
