"""What durability costs: `scraper work` with the old settings against the new ones.

    /work/venv/bin/python benchmarks/durability.py                    # ~3,000 pages, 2 rounds
    /work/venv/bin/python benchmarks/durability.py --comments 200000 --rounds 3

- old: output lines written (not fsynced) before the acknowledgement; Redis
  AOF with ``appendfsync everysec``;
- new: one ``fsync`` of the shard per settle batch before the acknowledgement
  (``worker.fsync = true``); Redis AOF with ``appendfsync always``;
- and each of the two changes alone.

Each round starts a private redis-server (AOF on, data on the real disk), the
simulator (its own process), enqueues the corpus and times ``scraper work
--burst`` (2 processes x 128 coroutines, no rate limit). Output is checked
exact against the corpus. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scraper.simulator.corpus import Corpus  # noqa: E402

SCRAPER = [sys.executable, "-m", "scraper.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(data_dir: Path, appendfsync: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    data_dir.mkdir(parents=True)
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", appendfsync, "--dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


# label -> (fsync per settle batch, Redis appendfsync)
CONFIGS = {
    "old": (False, "everysec"),
    "fsync only": (True, "everysec"),
    "aof always only": (False, "always"),
    "new": (True, "always"),
}


def one_round(workdir: Path, *, fsync: bool, appendfsync: str, base_url: str, videos: Path) -> dict[str, float]:
    redis_proc, url = start_redis(workdir / "redis", appendfsync)
    env = {"SCRAPER_WORKER_HEARTBEAT_DIR": str(workdir / "beats"), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    common = ["--target", "video-list", "--redis-url", url, "--config-dir", str(REPO / "config")]
    try:
        subprocess.run([*SCRAPER, "coordinate", *common, "--videos", str(videos), "--base-url", base_url],
                       env=env, check=True, capture_output=True)  # fmt: skip
        work = [*SCRAPER, "work", *common, "--processes", "2", "--concurrency", "128", "--rate-limit", "0",
                "--burst", "--output-dir", str(workdir / "out")]  # fmt: skip
        env["SCRAPER_WORKER_FSYNC"] = "true" if fsync else "false"
        started = time.perf_counter()
        subprocess.run(work, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        pages = int(redis.Redis.from_url(url).hget("scraper:{video-list}:stats", "pages_done") or 0)
        rpids: set[int] = set()
        for shard in (workdir / "out" / "video-list").glob("*.jsonl"):
            rpids.update(orjson.loads(line)["rpid"] for line in shard.read_bytes().splitlines() if line)
        return {"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds, "rpids": len(rpids)}
    finally:
        redis_proc.terminate()
        redis_proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--comments", type=int, default=60000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = Corpus.generate(seed=7, videos=args.videos, comments=args.comments)
    expected = len(corpus.expected_rpids())
    with tempfile.TemporaryDirectory(prefix="durability-", dir=REPO / "benchmarks") as tmp:
        root = Path(tmp)
        videos = root / "videos.txt"
        sim = subprocess.Popen(
            [*SCRAPER, "simulate", "--port", "0", "--seed", "7", "--videos", str(args.videos), "--comments",
             str(args.comments), "--latency-ms", str(args.latency_ms), "--write-videos", str(videos)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            assert sim.stdout is not None
            base_url = ""
            while not base_url:
                match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", sim.stdout.readline())
                base_url = match.group(1) if match else ""
            results: dict[str, list[dict[str, float]]] = {label: [] for label in CONFIGS}
            for index in range(args.rounds):
                for label, (fsync, aof) in CONFIGS.items():  # alternate: all see the same machine weather
                    row = one_round(root / f"{index}-{label.replace(' ', '-')}", fsync=fsync, appendfsync=aof,
                                    base_url=base_url, videos=videos)  # fmt: skip
                    assert row["rpids"] == expected, f"{label}: {row['rpids']} of {expected} comments"
                    results[label].append(row)
                    print(f"round {index} {label}: {row['pages']:.0f} pages in {row['seconds']:.2f}s", flush=True)
        finally:
            sim.terminate()
            sim.wait()
    print()
    print("| settings | fsync per settle batch | Redis AOF | pages/s median | pages/s best |")
    print("|---|---|---|---|---|")
    medians = {}
    for label, (fsync, aof) in CONFIGS.items():
        rates = sorted(r["pages_per_s"] for r in results[label])
        medians[label] = rates[len(rates) // 2]
        cells = [label, "yes" if fsync else "no", f"appendfsync {aof}", f"{medians[label]:,.0f}", f"{rates[-1]:,.0f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nnew / old (medians): {medians['new'] / medians['old']:.2f} ({corpus.total_comments():,} comments)")


if __name__ == "__main__":
    main()
