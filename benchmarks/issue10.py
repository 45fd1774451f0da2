"""Issue 10's figures: requests against the fewest possible, -403/-352 share while keys
rotate, and the seed-size job through each root paging (auto, the default; cursor;
pages) next to the legacy path.

Each case starts `scraper simulate` (its own process, 127.0.0.1) and an embedded
redis-server in a temporary state folder, runs `coordinate` + `work --burst`, and
reads the simulator's /_sim/stats and the output's `crawled_at` stamps.

    python benchmarks/issue10.py requests      # ~30 videos: requests / minimal (target <= 1.1)
    python benchmarks/issue10.py rotation      # keys rotating every 3 s, 50 ms latency
    python benchmarks/issue10.py seed          # 200 videos / 333k comments at 50 ms: every paging
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from _simproc import REPO, SCRAPER, isolated_env, simulator

sys.path.insert(0, str(REPO))
from scraper.simulator.corpus import Corpus  # noqa: E402

SESSION = "bench-session"


def crawl(sim_args: list[str], env_extra: dict[str, str], work_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="issue10-") as tmp:
        root = Path(tmp)
        env = isolated_env(root, **env_extra)
        videos = root / "videos.txt"
        with simulator(sim_args, videos, env) as url:
            common = ["--target", "video-list"]
            subprocess.run([*SCRAPER, "coordinate", *common, "--videos", str(videos), "--base-url", url], env=env,
                           check=True, capture_output=True)  # fmt: skip
            started = time.perf_counter()
            work = subprocess.run([*SCRAPER, "work", *common, "--burst", "--rate-limit", "0", "--output-dir",
                                   str(root / "out"), *work_args], env=env, capture_output=True, text=True)  # fmt: skip
            elapsed = time.perf_counter() - started
            stats = orjson.loads(urllib.request.urlopen(f"{url}/_sim/stats", timeout=10).read())
            report = subprocess.run([*SCRAPER, "report", *common, "--json"], env=env, capture_output=True, text=True)
        spans: dict[int, list[int]] = defaultdict(lambda: [2**63, 0])
        rpids: set[int] = set()
        for shard in (root / "out").rglob("*.jsonl"):
            for line in shard.read_bytes().splitlines():
                record = orjson.loads(line)
                rpids.add(record["rpid"])
                span = spans[record["oid"]]
                span[0], span[1] = min(span[0], record["crawled_at"]), max(span[1], record["crawled_at"])
        longest = max(((hi - lo) / 1000 for lo, hi in spans.values()), default=0.0)
        return {
            "work_exit": work.returncode,
            "seconds": round(elapsed, 2),
            "requests": stats["requests"],
            "by_code": stats["by_code"],
            "comments": len(rpids),
            "summary": orjson.loads(report.stdout)["summary"] if report.stdout else {},
            "longest_video_s": round(longest, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["requests", "rotation", "seed"])
    args = parser.parse_args()
    cookie = {"SCRAPER_COOKIE": f"SESSDATA={SESSION}"}
    work = ["--processes", "2", "--concurrency", "128"]
    if args.case == "requests":
        corpus = Corpus.generate(seed=30, videos=30, comments=40_000)
        minimal = corpus.minimal_requests()
        for paging in ("auto", "cursor", "pages"):
            sim = ["--seed", "30", "--videos", "30", "--comments", "40000", "--session", SESSION]
            result = crawl(sim, {**cookie, "SCRAPER_TARGET_ROOT_PAGING": paging}, work)
            print(orjson.dumps(result).decode())
            print(f"{paging}: requests {result['requests']} / minimal {minimal} = {result['requests'] / minimal:.3f}x; "
                  f"comments {result['comments']} of {len(corpus.all_rpids())}")  # fmt: skip
    elif args.case == "rotation":
        sim = ["--seed", "31", "--videos", "30", "--comments", "40000", "--session", SESSION]
        for paging in ("auto", "cursor"):  # cursor: every root page signed, the worst case
            paged = {**cookie, "SCRAPER_TARGET_ROOT_PAGING": paging}
            result = crawl([*sim, "--latency-ms", "50", "--key-rotate-s", "3"], paged, work)
            refused = result["by_code"].get("-403", 0) + result["by_code"].get("-352", 0)
            print(orjson.dumps(result).decode())
            print(f"{paging}: -403/-352: {refused} of {result['requests']} requests = "
                  f"{100 * refused / result['requests']:.2f}%")  # fmt: skip
    else:
        sim = ["--seed", "1", "--videos", "200", "--comments", "333000", "--latency-ms", "50"]
        real, open_ = [*sim, "--session", SESSION], [*sim, "--profile", "legacy-open"]
        cases = [
            ("auto, real profile", crawl(real, cookie, work)),
            ("auto, open profile", crawl(open_, {}, work)),
            ("cursor, real profile", crawl(real, {**cookie, "SCRAPER_TARGET_ROOT_PAGING": "cursor"}, work)),
            ("pages, real profile", crawl(real, {**cookie, "SCRAPER_TARGET_ROOT_PAGING": "pages"}, work)),
            ("legacy, open profile", crawl(open_, {"SCRAPER_TARGET_ROOT_PAGING": "legacy"}, work)),
        ]
        for name, result in cases:
            share = result["longest_video_s"] / result["seconds"] if result["seconds"] else 0
            print(
                f"{name}: {result['seconds']} s, {result['requests']} requests, {result['comments']} comments, "
                f"longest video {result['longest_video_s']} s ({100 * share:.0f}% of the job), {result['summary']}"
            )


if __name__ == "__main__":
    main()
