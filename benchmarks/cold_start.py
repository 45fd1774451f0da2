"""Time a newcomer's first commands: the embedded Redis cold start and the README demo.

    .venv/bin/python benchmarks/cold_start.py            # 3 rounds
    .venv/bin/python benchmarks/cold_start.py --rounds 5

Each round copies the repository's tracked files to a fresh folder (a fresh
clone, without the install) and times, as subprocesses from that folder:

- ``scraper run --target video-list`` cold: no embedded Redis running yet,
  nothing crawled (the README's demo command);
- the same again, warm: Redis running, the crawl already done (nothing to do);
- after ``scraper reset``: Redis warm, the crawl done again from scratch;
- ``scraper redis stop`` and ``scraper redis status`` on the stopped server.

and, in-process, ``ensure_embedded`` on a fresh state folder (the Redis
cold start alone). Prints a table of medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fresh_copy(into: Path) -> Path:
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return into


def timed(args: list[str], cwd: Path) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPER_")}
    env["PYTHONPATH"] = str(cwd)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "scraper.cli", *args], cwd=cwd, env=env, capture_output=True, timeout=300, check=False
    )
    return time.perf_counter() - started, result.returncode


def redis_cold_start(tmp: Path) -> float:
    from scraper import redis_conn

    state = tmp / "state"
    started = time.perf_counter()
    redis_conn.ensure_embedded(state)
    elapsed = time.perf_counter() - started
    redis_conn.stop_embedded(state)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="fresh copies to time (default 3)")
    args = parser.parse_args()
    steps = ["embedded Redis cold start", "run (cold)", "run (warm, nothing to do)", "run (warm Redis, after reset)"]
    steps += ["redis stop", "redis status (stopped)"]
    times: dict[str, list[float]] = {step: [] for step in steps}
    codes: dict[str, set[int]] = {step: set() for step in steps}
    demo = ["run", "--target", "video-list"]
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="scraper-cold-") as tmp:
            times[steps[0]].append(redis_cold_start(Path(tmp)))
            codes[steps[0]].add(0)
            clone = fresh_copy(Path(tmp) / "clone")
            try:
                for step, command in (
                    (steps[1], demo),
                    (steps[2], demo),
                    (None, ["reset", "--target", "video-list"]),
                    (steps[3], demo),
                    (steps[4], ["redis", "stop"]),
                    (steps[5], ["redis", "status"]),
                ):
                    elapsed, code = timed(command, clone)
                    if step is not None:
                        times[step].append(elapsed)
                        codes[step].add(code)
            finally:
                timed(["redis", "stop"], clone)
    print(f"{'step':<34} {'median s':>9} {'min s':>7} {'max s':>7}  exit codes")
    for step in steps:
        values = times[step]
        print(
            f"{step:<34} {statistics.median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}  "
            f"{sorted(codes[step])}"
        )
    print(f"({args.rounds} rounds, {os.cpu_count()} CPUs; `redis status` on a stopped server exits 1 by design)")


if __name__ == "__main__":
    main()
