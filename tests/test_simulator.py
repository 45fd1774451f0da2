"""The bundled simulator, against a real in-process aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from scraper.simulator import (
    Corpus,
    RunningSimulator,
    SimulatorOptions,
    build_app,
    start_simulator,
)
from scraper.simulator.app import SIMULATOR_KEY
from scraper.videos import parse_video_ref, read_video_list
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent

ROOT_KEYS = {
    "rpid",
    "rpid_str",
    "oid",
    "type",
    "mid",
    "root",
    "root_str",
    "parent",
    "parent_str",
    "dialog",
    "count",
    "rcount",
    "state",
    "ctime",
    "like",
    "member",
    "content",
    "replies",
}
MEMBER_KEYS = {"mid", "uname", "sex", "sign", "avatar", "level_info"}


@asynccontextmanager
async def serving(corpus: Corpus | None = None, **options: Any) -> AsyncIterator[RunningSimulator]:
    sim = await start_simulator(SimulatorOptions(**options), corpus=corpus)
    try:
        yield sim
    finally:
        await sim.close()


@asynccontextmanager
async def session(fresh_connections: bool = False) -> AsyncIterator[aiohttp.ClientSession]:
    # fresh_connections: a connection the server dropped is never handed to the
    # next request, so each error belongs to the request that met the fault.
    connector = aiohttp.TCPConnector(limit=32, force_close=fresh_connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def get_json(client: aiohttp.ClientSession, url: str) -> Any:
    async with client.get(url) as response:
        assert response.status == 200, (url, response.status)
        assert response.content_type == "application/json"
        return orjson.loads(await response.read())


async def fetch_all(client: aiohttp.ClientSession, urls: list[str]) -> list[Any]:
    return await asyncio.gather(*(get_json(client, url) for url in urls))


def check_comment(comment: dict[str, Any], *, oid: int, root: int) -> None:
    assert set(comment) == ROOT_KEYS
    assert comment["oid"] == oid and comment["type"] == 1 and comment["state"] == 0
    assert comment["rpid"] > 0 and comment["rpid_str"] == str(comment["rpid"])
    assert comment["root"] == comment["parent"] == root
    assert comment["root_str"] == comment["parent_str"] == str(root)
    assert comment["count"] == comment["rcount"] >= 0
    assert set(comment["member"]) == MEMBER_KEYS
    assert comment["member"]["mid"] == str(comment["mid"])
    assert 1 <= comment["member"]["level_info"]["current_level"] <= 6
    assert comment["content"]["message"] and comment["content"]["members"] == []
    assert comment["ctime"] > 1_500_000_000 and comment["like"] >= 0
    if root:
        assert comment["replies"] is None and comment["rcount"] == 0 and comment["dialog"] == comment["rpid"]
    elif comment["rcount"]:
        assert len(comment["replies"]) == min(3, comment["rcount"])
    else:
        assert comment["replies"] is None


# -- the corpus -------------------------------------------------------------------


def test_corpus_is_deterministic_and_ids_are_unique() -> None:
    first = Corpus.generate(seed=7, videos=12, comments=3000)
    again = Corpus.generate(seed=7, videos=12, comments=3000)
    other = Corpus.generate(seed=8, videos=12, comments=3000)
    rpids = first.expected_rpids()
    assert rpids == again.expected_rpids()
    assert [v.aid for v in first.videos] == [v.aid for v in again.videos]
    assert first.page_urls("http://h") == again.page_urls("http://h")
    assert rpids.isdisjoint(other.expected_rpids())
    assert [v.aid for v in first.videos] != [v.aid for v in other.videos]
    # as many distinct ids as comments: no id is handed out twice
    assert len(rpids) == first.expected_comment_count() == sum(v.acount for v in first.videos) == 3000
    assert min(rpids) > 0
    aids = [v.aid for v in first.videos]
    assert len(set(aids)) == 12 and all(10**6 <= aid < 10**9 for aid in aids)
    assert [v.state for v in first.videos[:4]] == ["closed", "empty", "deleted", "ok"]
    assert all(v.state == "ok" and v.roots > 0 for v in first.videos[3:])
    assert first.videos[1].roots == 0


@pytest.mark.parametrize("comments", [500, 5000, 333_000])
def test_generate_hits_its_comment_total(comments: int) -> None:
    corpus = Corpus.generate(seed=1, videos=20, comments=comments)
    assert abs(corpus.expected_comment_count() - comments) <= comments * 0.05
    assert len(corpus.page_urls("")) == corpus.expected_pages()
    if comments == 333_000:
        # the design's benchmark job: ~20 comments per fetched page
        assert 16_000 <= corpus.expected_pages() <= 17_000
        roots = [r for v in corpus.videos for r in v.rcounts]
        with_replies = [r for r in roots if r]
        assert 0.2 <= len(with_replies) / len(roots) <= 0.3
        assert any(r <= 3 for r in with_replies)
        assert sum(r > 60 for r in with_replies) > 100  # threads of several reply pages


def test_small_corpora() -> None:
    assert Corpus.generate(seed=1, videos=0, comments=100).expected_pages() == 0
    one = Corpus.generate(seed=1, videos=1, comments=100)
    assert one.videos[0].state == "ok" and one.expected_comment_count() == 100
    three = Corpus.generate(seed=1, videos=3, comments=100)
    assert [v.state for v in three.videos] == ["closed", "empty", "ok"]


def test_video_refs_round_trip_through_the_parser(tmp_path: Path) -> None:
    corpus = Corpus.generate(seed=5, videos=10, comments=1000)
    refs = corpus.video_refs()
    assert refs == corpus.video_refs()
    assert len(refs) == 11
    assert any(r.startswith("BV1") for r in refs)
    assert any(r.startswith("av") for r in refs)
    assert any(r.startswith("https://www.bilibili.com/video/BV") for r in refs)
    parsed = [parse_video_ref(r).aid for r in refs]
    assert len(set(parsed)) == 10 and set(parsed) == {v.aid for v in corpus.videos}
    duplicated = [aid for aid in set(parsed) if parsed.count(aid) == 2]
    assert len(duplicated) == 1
    twice = [r for r, aid in zip(refs, parsed) if aid == duplicated[0]]
    assert twice[0] != twice[1]  # the duplicate comes in another form

    path = tmp_path / "videos.txt"
    corpus.write_videos(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == ""
    video_list = read_video_list(path)
    assert [v.aid for v in video_list.videos] == [v.aid for v in corpus.videos]
    assert video_list.duplicates == 1


def test_for_aids_makes_every_video_ok() -> None:
    aids = [170001, 2, 170001, 987654321]
    corpus = Corpus.for_aids(aids, seed=3, comments_per_video=150)
    assert [v.aid for v in corpus.videos] == [170001, 2, 987654321]
    assert all(corpus.video(aid).state == "ok" for aid in aids)  # type: ignore[union-attr]
    assert corpus.video(170001).bvid == "BV17x411w7KC"  # type: ignore[union-attr]
    assert corpus.expected_comment_count() == 3 * 150
    assert corpus.video(3) is None


# -- crawling ---------------------------------------------------------------------


@pytest.mark.parametrize("cache", [{}, {"warm_cache": False, "cache_mb": 0.05}], ids=["warm cache", "small cold cache"])
async def test_crawling_every_page_url_yields_exactly_the_expected_comments(cache: dict[str, Any]) -> None:
    corpus = Corpus.generate(seed=3, videos=8, comments=2500)
    async with serving(corpus, **cache) as sim, session() as client:
        urls = corpus.page_urls(sim.url)
        assert len(urls) == corpus.expected_pages()
        assert len(set(urls)) == len(urls)
        pages = await fetch_all(client, urls)
        stats = sim.stats()
    seen: list[int] = []
    codes: dict[int, int] = {}
    for url, page in zip(urls, pages):
        oid = int(re.search(r"oid=(\d+)", url).group(1))  # type: ignore[union-attr]
        video = corpus.video(oid)
        assert video is not None
        if "/reply/reply" not in url:
            codes[oid] = page["code"]
            if page["code"] != 0:
                continue
            assert page["data"]["page"]["count"] == video.roots
            assert page["data"]["page"]["acount"] == video.acount
            assert page["data"]["page"]["size"] == 20
            assert page["data"]["top_replies"] == []
            for comment in page["data"]["replies"]:
                check_comment(comment, oid=oid, root=0)
                seen.append(comment["rpid"])
                if comment["rcount"] <= 3 and comment["replies"]:
                    for reply in comment["replies"]:
                        check_comment(reply, oid=oid, root=comment["rpid"])
                        seen.append(reply["rpid"])
        else:
            assert page["code"] == 0
            root = int(re.search(r"root=(\d+)", url).group(1))  # type: ignore[union-attr]
            assert page["data"]["root"]["rpid"] == root
            assert page["data"]["page"]["count"] == page["data"]["root"]["rcount"] > 3
            for reply in page["data"]["replies"]:
                check_comment(reply, oid=oid, root=root)
                seen.append(reply["rpid"])
    assert codes[corpus.videos[0].aid] == 12002
    assert codes[corpus.videos[2].aid] == -404
    assert len(seen) == len(set(seen)), "a comment came twice"
    assert set(seen) == corpus.expected_rpids()
    assert len(seen) == corpus.expected_comment_count() == 2500
    assert stats["requests"] == len(urls) and stats["by_status"] == {"200": len(urls)}
    if cache:
        assert stats["cache"]["bytes"] <= 0.05 * 1024 * 1024
    else:  # every page is rendered before the first request
        assert stats["cache"]["pages"] == len(urls) - 2  # the closed and the deleted video's error page


async def test_edges_errors_and_other_endpoints() -> None:
    corpus = Corpus.generate(seed=4, videos=6, comments=1200)
    closed, empty, deleted, video = corpus.videos[0], corpus.videos[1], corpus.videos[2], corpus.videos[3]
    thread = next(i for i, r in enumerate(video.rcounts) if r > 3)
    root = video.root_rpid(thread)
    last_page = math.ceil(video.roots / 20)
    async with serving(corpus) as sim, session() as client:
        base = sim.url

        async def api(path: str) -> Any:
            return await get_json(client, base + path)

        past_end = await api(f"/x/v2/reply?type=1&oid={video.aid}&pn={last_page + 1}&ps=20&sort=0")
        assert past_end["code"] == 0 and past_end["data"]["replies"] == []
        assert past_end["data"]["page"]["count"] == video.roots
        nothing = await api(f"/x/v2/reply?type=1&oid={empty.aid}&pn=1&ps=20&sort=0")
        assert nothing["code"] == 0 and nothing["data"]["replies"] == [] and nothing["data"]["page"]["count"] == 0
        reply_end = await api(f"/x/v2/reply/reply?type=1&oid={video.aid}&root={root}&pn=99&ps=20")
        assert reply_end["code"] == 0 and reply_end["data"]["replies"] == []

        assert await api(f"/x/v2/reply?type=1&oid={closed.aid}&pn=1&ps=20&sort=0") == {
            "code": 12002,
            "message": "评论区已关闭",
            "ttl": 1,
        }
        assert await api(f"/x/v2/reply?type=1&oid={deleted.aid}&pn=1&ps=20&sort=0") == {
            "code": -404,
            "message": "啥都木有",
            "ttl": 1,
        }
        assert (await api("/x/v2/reply?type=1&oid=123&pn=1&ps=20&sort=0"))["code"] == -404
        assert (await api("/x/v2/reply?type=1&pn=1&ps=20"))["code"] == -400
        assert (await api("/x/v2/reply?type=1&oid=abc&pn=1"))["code"] == -400
        assert (await api(f"/x/v2/reply/reply?type=1&oid={video.aid}&root=5&pn=1&ps=20"))["code"] == -404
        other_root = corpus.videos[4].root_rpid(0)
        assert (await api(f"/x/v2/reply/reply?type=1&oid={video.aid}&root={other_root}&pn=1"))["code"] == -404

        # ps clamps to 20; parameters come in any order
        wide = await api(f"/x/v2/reply?type=1&oid={video.aid}&pn=1&ps=50&sort=0")
        assert wide["data"]["page"]["size"] == 20 and len(wide["data"]["replies"]) == min(20, video.roots)
        shuffled = await api(f"/x/v2/reply?sort=0&ps=20&pn=1&oid={video.aid}&type=1")
        assert shuffled == wide
        small = await api(f"/x/v2/reply?type=1&oid={video.aid}&pn=2&ps=5&sort=0")
        assert [c["rpid"] for c in small["data"]["replies"]] == [c["rpid"] for c in wide["data"]["replies"][5:10]]

        count = await api(f"/x/v2/reply/count?type=1&oid={video.aid}")
        assert count == {"code": 0, "message": "0", "ttl": 1, "data": {"count": video.acount}}
        for query in (f"bvid={video.bvid}", f"aid={video.aid}"):
            view = await api(f"/x/web-interface/view?{query}")
            assert view["code"] == 0
            assert (view["data"]["aid"], view["data"]["bvid"]) == (video.aid, video.bvid)
            assert view["data"]["stat"]["reply"] == video.acount and view["data"]["title"]
        assert (await api(f"/x/web-interface/view?aid={deleted.aid}"))["code"] == -404
        assert (await api("/x/web-interface/view?bvid=BVnope"))["code"] == -400

        async with client.get(base + "/x/v2/nothing-here") as response:
            assert response.status == 404


async def test_max_page_answers_minus_400_and_is_not_expected() -> None:
    corpus = Corpus.generate(seed=2, videos=6, comments=3000, max_page=2)
    capped = [v for v in corpus.videos if v.roots > 40]
    assert capped, "the corpus should have videos deeper than the cap"
    async with serving(corpus) as sim, session() as client:
        urls = corpus.page_urls(sim.url)
        pages = await fetch_all(client, urls)
        deep = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={capped[0].aid}&pn=9&ps=20&sort=0")
    assert deep == {"code": -400, "message": "max offset exceeded", "ttl": 1}
    refused = [url for url, page in zip(urls, pages) if page["code"] == -400]
    # exactly one refused page (max_page + 1) per capped video, and it was asked for
    assert sorted(refused) == sorted(f"{sim.url}/x/v2/reply?type=1&oid={v.aid}&pn=3&ps=20&sort=0" for v in capped)
    seen: set[int] = set()
    for page in pages:
        if page["code"] == 0:
            for comment in page["data"]["replies"]:
                seen.add(comment["rpid"])
                if comment.get("rcount", 0) <= 3:
                    seen.update(reply["rpid"] for reply in comment["replies"] or [])
    assert seen == corpus.expected_rpids()
    unreachable = {v.root_rpid(i) for v in capped for i in range(40, v.roots)}
    assert unreachable and unreachable.isdisjoint(corpus.expected_rpids())
    assert corpus.expected_comment_count() < sum(v.acount for v in corpus.videos)


# -- faults -----------------------------------------------------------------------


async def attempt(client: aiohttp.ClientSession, url: str) -> str:
    """What a crawler sees for one request: "ok" or the kind of failure."""
    try:
        async with client.get(url) as response:
            body = await response.read()
            if response.status != 200:
                return f"http {response.status}"
    except aiohttp.ClientPayloadError:
        return "payload error"
    except aiohttp.ClientConnectionError:
        return "connection error"
    except TimeoutError:
        return "timeout"
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "bad json"
    return "ok" if data["code"] == 0 else f"code {data['code']}"


FAULT_SYMPTOMS = {
    "fail": {"http 500", "http 503", "code -503"},
    "truncate": {"payload error"},
    "bad_json": {"bad json"},
    "reset": {"connection error"},
}


@pytest.mark.parametrize("kind", sorted(FAULT_SYMPTOMS))
async def test_each_fault_happens_at_its_rate_and_at_most_twice_per_url(kind: str) -> None:
    rate = 0.3
    corpus = Corpus.generate(seed=6, videos=8, comments=6000)
    async with serving(corpus, seed=6, **{f"{kind}_rate": rate}) as sim, session(fresh_connections=True) as client:
        broken = {f"oid={v.aid}&" for v in corpus.videos if v.state in ("closed", "deleted")}
        urls = [u for u in corpus.page_urls(sim.url) if not any(b in u for b in broken)][:300]
        first = await asyncio.gather(*(attempt(client, url) for url in urls))
        first_stats = sim.stats()
        # retry what failed, like a crawler with 3 attempts would
        failures = dict.fromkeys(urls, 0)
        pending = [url for url, result in zip(urls, first) if result != "ok"]
        for url in pending:
            failures[url] = 1
        for _ in range(2):
            results = await asyncio.gather(*(attempt(client, url) for url in pending))
            for url, result in zip(pending, results):
                failures[url] += result != "ok"
            pending = [url for url, result in zip(pending, results) if result != "ok"]
        stats = sim.stats()
        # the admin endpoints are never faulted
        for _ in range(5):
            async with client.get(sim.url + "/_sim/stats") as response:
                assert response.status == 200
    failed_first = [r for r in first if r != "ok"]
    assert failed_first and set(failed_first) <= FAULT_SYMPTOMS[kind]
    # aiohttp silently resends a GET once after a reset, so the rate is the
    # server's count over the requests it really got
    assert abs(first_stats["faults"][kind] / first_stats["requests"] - rate) < 0.08
    if kind == "fail":
        assert set(failed_first) == FAULT_SYMPTOMS["fail"]  # all three shapes show up
    # a URL is faulted at most twice: three attempts always get every page
    assert pending == []
    assert sum(v for k, v in stats["faults"].items() if k != kind) == 0
    if kind != "reset":
        assert first_stats["faults"][kind] == len(failed_first)
        assert max(failures.values()) == 2
        assert stats["faults"][kind] == sum(failures.values())
        assert stats["requests"] == len(urls) + sum(failures.values())


async def test_every_request_faulted_gives_exactly_max_faults_then_success() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    async with (
        serving(corpus, fail_rate=0.5, truncate_rate=0.5, max_faults_per_url=2) as sim,
        session(fresh_connections=True) as client,
    ):
        for url in corpus.page_urls(sim.url)[-5:]:
            results = [await attempt(client, url) for _ in range(4)]
            assert results[2:] == ["ok", "ok"]
            assert set(results[:2]) <= {"payload error", "http 500", "http 503", "code -503"}
        stats = sim.stats()
    assert stats["faults"]["fail"] + stats["faults"]["truncate"] == 10
    assert stats["requests"] == 20


async def test_fault_decisions_are_deterministic() -> None:
    corpus = Corpus.generate(seed=9, videos=6, comments=2000)
    outcomes = []
    for _ in range(2):
        async with serving(corpus, seed=9, fail_rate=0.25, bad_json_rate=0.25) as sim, session() as client:
            urls = corpus.page_urls(sim.url)
            outcomes.append([await attempt(client, url) for url in urls])
            # /_sim/reset forgets the fault history: the same crawl meets the same faults again
            async with client.post(sim.url + "/_sim/reset") as response:
                assert response.status == 200
            assert sim.stats()["requests"] == 0
            assert [await attempt(client, url) for url in urls] == outcomes[-1]
    assert outcomes[0] == outcomes[1]
    assert 0 < sum(r != "ok" for r in outcomes[0]) < len(outcomes[0])


async def test_slow_fault_delays_the_answer() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    async with serving(corpus, slow_rate=1.0, slow_ms=600, max_faults_per_url=1) as sim, session() as client:
        url = corpus.page_urls(sim.url)[-1]
        with pytest.raises(asyncio.TimeoutError):
            async with client.get(url, timeout=aiohttp.ClientTimeout(total=0.2)):
                pass
        assert await attempt(client, url) == "ok"
        assert sim.stats()["faults"]["slow"] == 1


# -- rate limit -------------------------------------------------------------------


async def test_over_the_limit_gets_banned_with_html_412() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    url = corpus.page_urls("")[-1]
    options = {"rate_limit": 5, "rate_burst": 3, "ban_seconds": 1.0, "ban_shape": "html"}

    async def status(client: aiohttp.ClientSession, base: str) -> int:
        async with client.get(base + url) as response:
            if response.status == 412:
                assert response.content_type == "text/html"
                assert "request rejected by security control" in await response.text()
            return response.status

    async with serving(corpus, **options) as sim, session() as client:
        # six at once: the burst of three passes, the fourth earns a ban
        statuses = await asyncio.gather(*(status(client, sim.url) for _ in range(6)))
        banned_at = time.monotonic()
        assert sorted(statuses) == [200, 200, 200, 412, 412, 412]
        # 0.3 s at 5/s refills the bucket, but the ban holds for ban_seconds
        await asyncio.sleep(0.3)
        during_ban = await status(client, sim.url)
        if time.monotonic() - banned_at < 0.9:
            assert during_ban == 412
        await asyncio.sleep(max(0.0, 1.1 - (time.monotonic() - banned_at)))
        assert await status(client, sim.url) == 200
        stats = sim.stats()
    refused = 3 + (during_ban == 412)
    assert stats["banned_requests"] == refused
    assert stats["by_status"] == {"200": 8 - refused, "412": refused}
    assert stats["requests"] == 8
    assert sum(stats["per_second"].values()) == 8
    assert 1 <= stats["peak_per_second"] <= 8


async def test_json_and_mixed_ban_shapes() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    url_path = corpus.page_urls("")[-1]
    for shape, expected in (("json", ["json", "json", "json"]), ("mixed", ["html", "json", "html"])):
        async with (
            serving(corpus, rate_limit=1, rate_burst=1, ban_seconds=30, ban_shape=shape) as sim,
            session() as client,
        ):
            assert await attempt(client, sim.url + url_path) == "ok"
            shapes = []
            for _ in range(3):
                async with client.get(sim.url + url_path) as response:
                    if response.status == 412:
                        shapes.append("html")
                    else:
                        assert response.status == 200
                        assert orjson.loads(await response.read()) == {
                            "code": -412,
                            "message": "request was banned",
                            "ttl": 1,
                        }
                        shapes.append("json")
            assert shapes == expected
            assert sim.stats()["banned_requests"] == 3


async def test_429_mode_sends_retry_after_and_does_not_ban() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    url_path = corpus.page_urls("")[-1]
    async with serving(corpus, rate_limit=2, rate_burst=2, throttle_status=429) as sim, session() as client:
        statuses = []
        for _ in range(3):
            async with client.get(sim.url + url_path) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
        assert statuses == [200, 200, 429]
        await asyncio.sleep(0.6)  # 2/s refills a token in 0.5 s; no ban to sit out
        assert await attempt(client, sim.url + url_path) == "ok"
        assert sim.stats()["by_status"] == {"200": 3, "429": 1}


async def test_latency_is_added() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    async with serving(corpus, latency_ms=150) as sim, session() as client:
        started = time.monotonic()
        assert await attempt(client, corpus.page_urls(sim.url)[-1]) == "ok"
        assert time.monotonic() - started >= 0.14


# -- the blocking entry point ---------------------------------------------------------


def test_run_simulator_prints_its_address_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    videos = tmp_path / "videos.txt"
    code = (
        "from pathlib import Path\n"
        "from scraper.simulator import SimulatorOptions, run_simulator\n"
        f"run_simulator(SimulatorOptions(seed=2, videos=6, comments=800), host='127.0.0.1', port={port},"
        f" write_videos=Path({str(videos)!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        corpus = Corpus.generate(seed=2, videos=6, comments=800)
        assert line.strip() == (
            f"simulator listening on http://127.0.0.1:{port} (6 videos, 800 comments, {corpus.expected_pages()} pages)"
        )
        assert [v.aid for v in read_video_list(videos).videos] == [v.aid for v in corpus.videos]

        async def one_page() -> Any:
            async with session() as client:
                return await get_json(client, corpus.page_urls(f"http://127.0.0.1:{port}")[-1])

        assert asyncio.run(one_page())["code"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_build_app_serves_the_same_api_and_admin_is_not_counted() -> None:
    corpus = Corpus.generate(seed=1, videos=5, comments=500)
    app = build_app(corpus, SimulatorOptions(fail_rate=1.0, max_faults_per_url=1))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        url = corpus.page_urls("")[-1]
        async with client.get(url) as response:
            first = response.status, await response.read()
        async with client.get(url) as response:
            assert response.status == 200
            page = orjson.loads(await response.read())
        assert first[0] in (500, 503) or orjson.loads(first[1])["code"] == -503
        assert page["code"] == 0 and page["data"]["replies"]
        async with client.get("/_sim/reset") as response:
            assert response.status == 405
        async with client.get("/_sim/stats") as response:
            stats = orjson.loads(await response.read())
        assert stats["requests"] == 2 and stats["faults"]["fail"] == 1
        assert app[SIMULATOR_KEY].stats_dict()["requests"] == 2
        async with client.post("/_sim/reset") as response:
            assert response.status == 200
        assert app[SIMULATOR_KEY].stats_dict()["requests"] == 0
