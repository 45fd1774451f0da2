"""Refresh crawls (issue 11): after a complete crawl, fetch only what is new.

Real redis-server, the real-service simulator in a thread, the real ``scraper``
command in subprocesses. The simulator grows between crawls (POST /_sim/grow):
new roots, new replies in recent threads and in the pinned one, a like count
that changed.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from scraper.simulator.corpus import Corpus
from scraper.simulator.model import PREVIEW_SIZE, SimVideo
from scraper.simulator.options import SimulatorOptions
from tests.helpers import cli_env, run_cli, stats_json
from tests.sim_thread import endpoint_requests, served

SESSION = "s3ss-refresh"
CURSOR = "/x/v2/reply/wbi/main"
THREAD = "/x/v2/reply/reply"


def _corpus() -> Corpus:
    return Corpus.generate(seed=23, videos=6, comments=4000)


def _ok(corpus: Corpus) -> list[SimVideo]:
    return [v for v in corpus.videos if v.state == "ok" and v.roots > 0]


def _grow(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/_sim/grow", data=orjson.dumps(body), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        added: dict[str, Any] = orjson.loads(response.read())["added"]
    return added


def _list(path: Path, videos: list[SimVideo]) -> Path:
    path.write_text("".join(f"av{v.aid}\n" for v in videos))
    return path


class Crawl:
    """The CLI against one Redis and one output folder."""

    def __init__(self, tmp_path: Path, redis_url: str, sim_url: str, paging: str = "cursor") -> None:
        self.tmp = tmp_path
        self.env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_TARGET_ROOT_PAGING=paging)
        self.common = ["--target", "video-list", "--redis-url", redis_url]
        self.out = tmp_path / "out"
        self.sim_url = sim_url
        self.redis_url = redis_url

    def coordinate(self, videos: Path, *flags: str) -> Any:
        return run_cli(
            ["coordinate", *self.common, "--videos", str(videos), "--base-url", self.sim_url, *flags], self.env
        )

    def work(self) -> None:
        flags = ["--processes", "1", "--concurrency", "16", "--rate-limit", "0", "--burst"]
        result = run_cli(["work", *self.common, *flags, "--output-dir", str(self.out)], self.env, timeout=180)
        assert result.returncode in (0, 3), result.stderr

    def export(self) -> list[dict[str, Any]]:
        target = self.tmp / "all.jsonl"
        result = run_cli(["export", *self.common, "--output-dir", str(self.out), "--output", str(target)], self.env)
        assert result.returncode == 0, result.stderr
        return [orjson.loads(line) for line in target.read_bytes().splitlines() if line]

    def report(self) -> tuple[int, dict[str, dict[str, Any]], str]:
        result = run_cli(["report", *self.common, "--json"], self.env)
        text = run_cli(["report", *self.common], self.env).stdout
        return result.returncode, {row["bvid"]: row for row in orjson.loads(result.stdout)["videos"]}, text


def _with_thread(corpus: Corpus, video: SimVideo, *, first: int) -> int:
    """The position (from ``first`` on) of a listed root with a thread longer than its preview."""
    return next(i for i in range(first, video.roots) if video.rcounts[i] > PREVIEW_SIZE + 2)


@pytest.mark.parametrize("paging", ["cursor", "pages"])
def test_refresh_fetches_what_is_new_and_exports_each_comment_once(tmp_path: Path, redis_url: str, paging: str) -> None:
    corpus = _corpus()
    ok = _ok(corpus)
    first_list, later = ok[:-1], ok[-1]  # `later` joins the list only for the refresh
    busy = max(first_list, key=lambda v: v.roots)
    quiet = next(v for v in first_list if v is not busy and v.roots > 20)
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        crawl = Crawl(tmp_path, redis_url, sim.url, paging)
        assert crawl.coordinate(_list(tmp_path / "first.txt", first_list)).returncode == 0
        crawl.work()
        assert {r["rpid"] for r in crawl.export()} == set().union(*(corpus.video_rpids(v) for v in first_list))
        first_requests = sum(v.get("requests", 0) for v in sim.stats()["by_endpoint"].values())

        position = _with_thread(corpus, busy, first=0)
        assert position < 13, "on the page where the refresh meets the watermark (after 27 new roots)"
        recent, recent_rcount = corpus.list_rpid(busy, position), busy.rcounts[position]
        liked = corpus.list_rpid(busy, 1)
        replies: dict[str, int] = {str(recent): 23}  # past one thread page: the refresh fetches the new ones
        if busy.has_pinned:
            replies[str(busy.pinned_rpid)] = 2
        body = {
            "videos": {str(busy.aid): {"roots": 27, "replies": replies}, str(quiet.aid): {"roots": 2}},
            "likes": {str(liked): 77_777},
        }
        added = _grow(sim.url, body)
        before = sim.stats()["by_endpoint"]

        everything = _list(tmp_path / "all.txt", [*first_list, later])
        refreshed = crawl.coordinate(everything, "--refresh")
        assert refreshed.returncode == 0, refreshed.stderr
        assert f"{len(first_list)} from their watermark, 1 in full" in refreshed.stdout
        # while the refresh is queued, a second one is refused with one line
        again = crawl.coordinate(everything, "--refresh")
        assert again.returncode == 2
        assert "refusing to refresh video-list: a crawl is still running" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
        crawl.work()
        after = sim.stats()["by_endpoint"]

    records = crawl.export()
    rpids = [r["rpid"] for r in records]
    assert len(rpids) == len(set(rpids))
    assert set(rpids) == set().union(*(corpus.video_rpids(v) for v in [*first_list, later]))
    assert set(added["rpids"]) <= set(rpids)
    copy = next(r for r in records if r["rpid"] == liked)
    assert copy["like"] == 77_777  # the newer crawl's copy won
    assert all(r["crawled_at"] > 0 for r in records)

    code, rows, text = crawl.report()
    assert code == 0, text
    assert all(row["status"] == "complete" for row in rows.values()), rows
    new_busy = 27 + sum(replies.values())
    assert rows[busy.bvid]["new"] == new_busy and rows[quiet.bvid]["new"] == 2
    assert all(rows[v.bvid]["refreshed_at"] for v in first_list)
    assert rows[later.bvid]["refreshed_at"] is None and rows[later.bvid]["new"] is None
    assert rows[later.bvid]["fetched"] == len(corpus.video_rpids(later))
    assert "never" in text and str(new_busy) in text

    stats = stats_json(redis_url, crawl.env)  # the refresh's progress, counted from its start
    assert stats["mode"] == "refresh" and stats["done"] and stats["pages_remaining"] == 0
    shown = run_cli(["stats", *crawl.common], crawl.env).stdout
    assert "target video-list  refresh  (done)" in shown and f"of {stats['pages_known']} known" in shown

    def spent(path: str) -> int:
        return int(after.get(path, {}).get("requests", 0)) - int(before.get(path, {}).get("requests", 0))

    assert 0 < stats["pages_known"] <= spent(CURSOR) + spent(THREAD)
    if paging == "pages":
        return  # page-numbered root paging has no newest-first order to stop on: it reads every root page
    # the refresh asked for little: the root pages down to the watermark, the new thread pages,
    # and the whole new video

    assert spent(CURSOR) == len(first_list) + 1 + max(1, -(-later.roots // 20))
    grown = -(-(recent_rcount + 23) // 20) - recent_rcount // 20  # the recent thread's pages past its known replies
    if busy.has_pinned and busy.pinned_replies + 2 > PREVIEW_SIZE:
        known = busy.pinned_replies if busy.pinned_replies > PREVIEW_SIZE else 0
        grown += -(-(busy.pinned_replies + 2) // 20) - known // 20
    assert spent(THREAD) == sum(pages for _, pages in corpus.threads(later, fan_out=True)) + grown
    # the videos crawled before: one or two root pages each and the grown threads
    assert len(first_list) + 1 + grown < first_requests / 10


def test_deep_refresh_finds_new_replies_to_old_comments(tmp_path: Path, redis_url: str) -> None:
    corpus = _corpus()
    ok = _ok(corpus)
    video = max(ok, key=lambda v: v.roots)
    old_position = _with_thread(corpus, video, first=video.roots // 2)
    old = corpus.list_rpid(video, old_position)
    small = next(i for i in range(video.roots // 2, video.roots) if video.rcounts[i] == 0)
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        crawl = Crawl(tmp_path, redis_url, sim.url)
        videos = _list(tmp_path / "v.txt", ok)
        assert crawl.coordinate(videos).returncode == 0
        crawl.work()
        known = crawl.report()[1][video.bvid]["fetched"]
        added = _grow(
            sim.url,
            {
                "videos": {
                    str(video.aid): {"roots": 3, "replies": {str(old): 5, str(corpus.list_rpid(video, small)): 4}}
                }
            },
        )
        new = set(added["rpids"])
        assert crawl.coordinate(videos, "--refresh").returncode == 0
        crawl.work()
        code, rows, text = crawl.report()
        # a plain refresh stops at the watermark: it does not see old threads, and says so
        assert code == 3
        assert rows[video.bvid]["status"] == "incomplete" and "--deep" in rows[video.bvid]["reason"]
        assert rows[video.bvid]["new"] == 3 and rows[video.bvid]["fetched"] == known + 3
        assert new - {r["rpid"] for r in crawl.export()} == set(added["rpids"]) - set(
            added["videos"][str(video.aid)]["roots"]
        )
        threads_before = endpoint_requests(sim, THREAD)
        cursor_before = endpoint_requests(sim, CURSOR)
        assert crawl.coordinate(videos, "--refresh", "--deep").returncode == 0
        crawl.work()
        thread_pages = endpoint_requests(sim, THREAD) - threads_before
        cursor_pages = endpoint_requests(sim, CURSOR) - cursor_before
    code, rows, text = crawl.report()
    assert code == 0, text
    # counted from the watermark again: the 3 roots the plain refresh found are not counted twice
    assert rows[video.bvid]["new"] == 12 and rows[video.bvid]["fetched"] == known + 12
    rpids = [r["rpid"] for r in crawl.export()]
    assert len(rpids) == len(set(rpids)) and set(rpids) == set().union(*(corpus.video_rpids(v) for v in ok))
    # every root page again, but only the grown threads: the old one past its known replies, the small one once
    assert cursor_pages == sum(max(1, -(-corpus.list_len(v) // 20)) for v in ok)
    before = video.rcounts[old_position]
    assert thread_pages == -(-(before + 5) // 20) - before // 20 + 1


def test_refresh_flags_are_checked(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path)
    videos = tmp_path / "v.txt"
    videos.write_text("av170001\n")
    result = run_cli(
        ["coordinate", "--target", "video-list", "--redis-url", redis_url, "--videos", str(videos), "--deep"], env
    )
    assert result.returncode == 2 and "--deep only makes sense with --refresh" in result.stderr


def test_what_a_refresh_keeps_in_redis_stays_within_16_bytes_a_page(tmp_path: Path, redis_url: str) -> None:
    """Issue 13's budget with the refresh's own data (watermark, per-thread rcounts) at rest."""
    corpus = Corpus.generate(seed=31, videos=30, comments=60_000)
    ok = _ok(corpus)
    busy = max(ok, key=lambda v: v.roots)
    threads = sum(len(corpus.threads(video)) for video in corpus.videos)  # before the growth
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        crawl = Crawl(tmp_path, redis_url, sim.url)
        videos = _list(tmp_path / "v.txt", corpus.videos)
        assert crawl.coordinate(videos).returncode == 0
        crawl.work()
        _grow(sim.url, {"videos": {str(busy.aid): {"roots": 30, "replies": {str(corpus.list_rpid(busy, 0)): 30}}}})
        assert crawl.coordinate(videos, "--refresh").returncode == 0
        crawl.work()
    client = redis.Redis.from_url(redis_url)
    try:
        pages = int(client.hget("scraper:{video-list}:stats", "pages_done") or 0)
        sizes = {key.decode(): int(client.memory_usage(key, samples=0) or 0) for key in client.scan_iter(count=1000)}
        rcounts = [client.strlen(key) for key in client.scan_iter(match="scraper:{video-list}:rcounts:*")]
    finally:
        client.close()
    assert pages > 3_000
    fixed = (":rate", ":stats", ":meta", ":consumers")
    growing = {k: v for k, v in sizes.items() if not k.endswith(fixed) and ":ratelimit:" not in k}
    per_page = sum(growing.values()) / pages
    assert per_page <= 16, f"{per_page:.1f} B per page over {pages} pages"
    assert sum(rcounts) == 12 * (threads + 1)  # 12 packed bytes per thread fetched, and one for the grown one
    assert run_cli(["reset", *crawl.common], crawl.env).returncode == 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match="scraper:{video-list}:*"))  # reset leaves nothing of the target
    finally:
        client.close()


def test_run_refresh_in_one_command(tmp_path: Path, redis_url: str) -> None:
    corpus = Corpus.generate(seed=5, videos=3, comments=1500)
    ok = _ok(corpus)
    video = ok[0]
    output = tmp_path / "all.jsonl"
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        crawl = Crawl(tmp_path, redis_url, sim.url)
        crawl.env["SCRAPER_TARGET_BASE_URL"] = sim.url
        args = ["run", *crawl.common, "--videos", str(_list(tmp_path / "v.txt", ok)), "--simulate", "never"]
        args += ["--processes", "1", "--rate-limit", "0", "--output-dir", str(crawl.out), "--output", str(output)]
        first = run_cli(args, crawl.env, timeout=180)
        assert first.returncode == 0, first.stderr
        added = _grow(sim.url, {"videos": {str(video.aid): {"roots": 4}}})
        refreshed = run_cli([*args, "--refresh"], crawl.env, timeout=180)
    assert refreshed.returncode == 0, refreshed.stderr
    rpids = {orjson.loads(line)["rpid"] for line in output.read_bytes().splitlines() if line}
    assert set(added["rpids"]) <= rpids and rpids == set().union(*(corpus.video_rpids(v) for v in ok))
    assert crawl.report()[1][video.bvid]["new"] == 4
