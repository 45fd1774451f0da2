"""Issue 11's figures: what a refresh costs against the first crawl when ~2% of the comments are new.

Each case starts `scraper simulate` (its own process, 127.0.0.1, real-service
profile with a session) and an embedded redis-server in a temporary state
folder; runs `coordinate` + `work --burst` (the first crawl), grows the
simulator by ~2% through POST /_sim/grow, then runs `coordinate --refresh`
(or `--refresh --deep`) + `work --burst`, and counts the simulator's requests
(/_sim/stats) of each step. The growth: per video, new roots (~1.5% of its
comments), new replies in its three most recent threads (~0.4%) and a few in
one old thread halfway down its list (~0.1%): the plain refresh cannot see
the last ones and must say so; the deep one must find them.

    python benchmarks/refresh.py            # 30 videos / 40k comments (~15 s)
    python benchmarks/refresh.py --no-old-replies   # only new roots and replies in recent threads
    python benchmarks/refresh.py --comments 120000 --videos 60
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from _simproc import REPO, SCRAPER, isolated_env, simulator

sys.path.insert(0, str(REPO))
from scraper.simulator.corpus import Corpus  # noqa: E402

SESSION = "bench-session"
WORK = ["--processes", "2", "--concurrency", "64", "--rate-limit", "0", "--burst"]


def growth(corpus: Corpus, share: float, *, old: bool = True) -> dict[str, Any]:
    """About ``share`` of the corpus's comments, spread as a day of activity would be."""
    videos: dict[str, Any] = {}
    for video in corpus.videos:
        if video.state != "ok" or video.roots < 8:
            continue
        size = corpus.all_count(video)
        roots = round(size * share * 0.75)
        recent = round(size * share * 0.2)
        replies = {str(corpus.list_rpid(video, i)): max(1, recent // 3) for i in range(3)}
        if old:
            replies[str(corpus.list_rpid(video, video.roots // 2))] = max(1, round(size * share * 0.05))
        videos[str(video.aid)] = {"roots": roots, "replies": replies}
    return {"videos": videos}


def sim_requests(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = orjson.loads(urllib.request.urlopen(f"{url}/_sim/stats", timeout=10).read())
    return stats


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCRAPER, *args], env=env, capture_output=True, text=True, check=False)


def case(seed: int, videos: int, comments: int, share: float, deep: bool, old: bool) -> dict[str, Any]:
    corpus = Corpus.generate(seed=seed, videos=videos, comments=comments)
    with tempfile.TemporaryDirectory(prefix="refresh-") as tmp:
        root = Path(tmp)
        env = isolated_env(root, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
        listing = root / "videos.txt"
        sim_args = ["--seed", str(seed), "--videos", str(videos), "--comments", str(comments), "--session", SESSION]
        with simulator(sim_args, listing, env) as url:
            common = ["--target", "video-list"]
            out = ["--output-dir", str(root / "out")]
            cli(["coordinate", *common, "--videos", str(listing), "--base-url", url], env)
            worked = cli(["work", *common, *WORK, *out], env)
            if worked.returncode not in (0, 3):
                raise SystemExit(worked.stderr[-2000:])
            first = sim_requests(url)
            request = urllib.request.Request(
                f"{url}/_sim/grow", data=orjson.dumps(growth(corpus, share, old=old)), method="POST"
            )
            added = orjson.loads(urllib.request.urlopen(request, timeout=10).read())["added"]
            flags = ["--refresh", "--deep"] if deep else ["--refresh"]
            seeded = cli(["coordinate", *common, "--videos", str(listing), "--base-url", url, *flags], env)
            if seeded.returncode != 0:
                raise SystemExit(seeded.stderr)
            worked = cli(["work", *common, *WORK, *out], env)
            if worked.returncode not in (0, 3):
                raise SystemExit(worked.stderr[-2000:])
            second = sim_requests(url)
            report = orjson.loads(cli(["report", *common, "--json"], env).stdout)
            exported = root / "all.jsonl"
            cli(["export", *common, *out, "--output", str(exported)], env)
        rpids = [orjson.loads(line)["rpid"] for line in exported.read_bytes().splitlines() if line]
    expected = corpus.all_rpids() | set(added["rpids"])

    def by_endpoint(stats: dict[str, Any]) -> dict[str, int]:
        return {path: int(v.get("requests", 0)) for path, v in stats["by_endpoint"].items()}

    before, after = by_endpoint(first), by_endpoint(second)
    spent = {path: after.get(path, 0) - before.get(path, 0) for path in after}
    return {
        "mode": "deep refresh" if deep else "refresh",
        "comments_before": len(corpus.all_rpids()),
        "new_comments": len(added["rpids"]),
        "first_crawl_requests": first["requests"],
        "refresh_requests": second["requests"] - first["requests"],
        "refresh_by_endpoint": {k: v for k, v in spent.items() if v},
        "new_found": sum(row["new"] or 0 for row in report["videos"]),
        "summary": report["summary"],
        "export_exact": set(rpids) == expected and len(rpids) == len(set(rpids)),
        "export_missing": len(expected - set(rpids)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=41)
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--comments", type=int, default=40_000)
    parser.add_argument("--share", type=float, default=0.02, help="new comments, as a share of the corpus")
    parser.add_argument("--no-old-replies", action="store_true", help="no new replies in old threads")
    args = parser.parse_args()
    for deep in (False, True):
        result = case(args.seed, args.videos, args.comments, args.share, deep, not args.no_old_replies)
        print(orjson.dumps(result).decode())
        ratio = result["refresh_requests"] / result["first_crawl_requests"]
        print(
            f"{result['mode']}: {result['refresh_requests']} requests vs {result['first_crawl_requests']} "
            f"for the first crawl = {100 * ratio:.2f}%; {result['new_comments']} new comments "
            f"({100 * result['new_comments'] / result['comments_before']:.2f}%), {result['new_found']} found; "
            f"videos {result['summary']}; export exact: {result['export_exact']} "
            f"({result['export_missing']} missing)"
        )


if __name__ == "__main__":
    main()
