"""Each error class ends where it should: retry, final record, dead letter; requeue completes.

Legacy paging (page numbers, a depth cap) with the simulator's session cookie:
the pages past the cap are final records, and their videos stay incomplete.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from scraper.simulator.corpus import Corpus
from tests.helpers import assert_exported_exactly, cli_env, coordinate, run_cli, simulator, stats_json

SEED, VIDEOS, COMMENTS, MAX_PAGE = 21, 12, 3000, 3
SESSION = "dead-letter-session"


def test_dead_letters_then_requeue_completes(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_TARGET_ROOT_PAGING="legacy")
    videos = tmp_path / "videos.txt"
    out = tmp_path / "out"
    common = ["--target", "video-list", "--redis-url", redis_url]
    work = [
        "work",
        *common,
        "--processes",
        "1",
        "--concurrency",
        "8",
        "--rate-limit",
        "0",
        "--burst",
        "--backoff-base",
        "0.05",
        "--output-dir",
        str(out),
    ]
    with simulator(
        env,
        "--seed",
        str(SEED),
        "--videos",
        str(VIDEOS),
        "--comments",
        str(COMMENTS),
        "--max-page",
        str(MAX_PAGE),
        "--fail-rate",
        "0.3",
        "--session",
        SESSION,
        "--write-videos",
        str(videos),
    ) as base_url:
        corpus = Corpus.generate(seed=SEED, videos=VIDEOS, comments=COMMENTS, max_page=MAX_PAGE)
        coordinate(env, common, videos, base_url)

        # One attempt only: every injected 5xx becomes a dead letter with its reason.
        first = run_cli([*work, "--max-attempts", "1"], env, timeout=120)
        assert first.returncode == 0, first.stderr
        stats = stats_json(redis_url, env)
        assert stats["dead"] > 0 and stats["retries"] == 0

        listed = run_cli(["dead", *common, "list", "--json"], env)
        letters = orjson.loads(listed.stdout)
        assert len(letters) == stats["dead"]
        assert {letter["reason"] for letter in letters} <= {"http_5xx", "overloaded"}
        assert all(letter["attempts"] == 1 and letter["error"] for letter in letters)  # numbers as numbers
        text = run_cli(["dead", *common, "list"], env).stdout
        assert f"{stats['dead']} dead letters" in text

        one = letters[0]["id"]
        requeued = run_cli(["dead", *common, "requeue", one], env)
        assert requeued.returncode == 0 and "1 pages back in the queue" in requeued.stdout
        missing = run_cli(["dead", *common, "requeue", "0-1"], env)
        assert missing.returncode == 2 and "no dead letter '0-1'" in missing.stderr
        rest = run_cli(["dead", *common, "requeue", "--all"], env)
        assert f"{stats['dead'] - 1} pages back in the queue" in rest.stdout

        # With retries allowed, the requeued pages (and their follow-ups) complete.
        second = run_cli([*work, "--max-attempts", "5"], env, timeout=120)
        assert second.returncode == 0, second.stderr
    after = stats_json(redis_url, env)
    assert (after["queued"], after["in_flight"], after["delayed"], after["dead"]) == (0, 0, 0, 0)
    # Final records: never retried, counted once each.
    assert after["final"]["closed"] == 1 and after["final"]["deleted"] >= 1  # a video, a deleted thread
    # Pages past the cap answer -400 and are recorded as such; the window of
    # 50 pages that page 1 opens bounds how many a deep video costs.
    assert (
        after["final"]["depth_cap"]
        == sum(max(0, min(-(-v.roots // 20), 51) - MAX_PAGE) for v in corpus.videos if v.state == "ok")
        > 0
    )
    assert_exported_exactly(tmp_path, common, out, env, corpus.expected_rpids())
    assert run_cli(["dead", *common, "purge"], env).stdout.strip() == "dead purge: 0 dead letters removed"
    # The requeued pages completed their videos; the ones past the cap are reported, not "done".
    report = run_cli(["report", *common, "--json"], env)
    assert report.returncode == 3
    rows = {row["oid"]: row for row in orjson.loads(report.stdout)["videos"]}
    for video in corpus.videos:
        capped = video.state == "ok" and video.roots > MAX_PAGE * 20
        expected = "incomplete" if capped else {"closed": "closed", "deleted": "deleted"}.get(video.state, "complete")
        assert rows[video.aid]["status"] == expected, rows[video.aid]
        if capped:
            assert "legacy paging depth reached" in rows[video.aid]["reason"]
