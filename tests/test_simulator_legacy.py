"""The legacy page-numbered endpoints, against a real in-process simulator."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from scraper.simulator import Corpus
from tests.test_simulator_kit import (
    LOGGED_IN,
    SESSION,
    check_comment,
    fetch_all,
    get_json,
    serving,
    session,
)

# -- crawling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "cache"),
    [("legacy-open", {}), ("legacy-open", {"warm_cache": False, "cache_mb": 0.05}), ("real", {})],
    ids=["open, warm cache", "open, small cold cache", "real with login"],
)
async def test_crawling_every_page_url_yields_exactly_the_expected_comments(
    profile: str, cache: dict[str, Any]
) -> None:
    corpus = Corpus.generate(seed=3, videos=8, comments=2500)
    headers = LOGGED_IN if profile == "real" else None
    async with serving(corpus, profile=profile, session=SESSION, **cache) as sim, session(headers=headers) as client:
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
            pinned = page["data"]["top_replies"]
            if "pn=1&" in url and video.has_pinned:
                # the pinned comment is outside the list, on page 1 only
                assert pinned == [page["data"]["upper"]["top"]] and pinned[0]["rpid"] == video.pinned_rpid
                assert pinned[0]["mid"] == video.upper_mid
            else:
                assert pinned == [] and page["data"]["upper"]["top"] is None
            for comment in pinned + page["data"]["replies"]:
                check_comment(comment, oid=oid, root=0)
                seen.append(comment["rpid"])
                if comment["rcount"] <= 3 and comment["replies"]:
                    for reply in comment["replies"]:
                        check_comment(reply, oid=oid, root=comment["rpid"])
                        seen.append(reply["rpid"])
        else:
            root = int(re.search(r"root=(\d+)", url).group(1))  # type: ignore[union-attr]
            ref = corpus.root(video, root)
            assert ref is not None
            if ref.gone:
                assert page == {"code": 12022, "message": "已经被删除了", "ttl": 1}
                continue
            assert page["code"] == 0
            assert page["data"]["root"]["rpid"] == root
            assert page["data"]["page"]["count"] == page["data"]["root"]["rcount"] > 3
            for reply in page["data"]["replies"]:
                check_comment(reply, oid=oid, root=root)
                seen.append(reply["rpid"])
    assert codes[corpus.videos[0].aid] == 12002
    assert codes[corpus.videos[2].aid] == -404
    assert len(seen) == len(set(seen)), "a comment came twice"
    assert set(seen) == corpus.expected_rpids()
    gone = [v for v in corpus.videos if v.gone_threads]
    assert gone and any(v.has_pinned for v in corpus.videos)
    hidden = sum(v.rcounts[i] for v in gone for i in v.gone_threads)
    assert len(seen) == corpus.expected_comment_count() == 2500 - hidden
    assert stats["requests"] == len(urls) and stats["by_status"] == {"200": len(urls)}
    if cache:
        assert stats["cache"]["bytes"] <= 0.05 * 1024 * 1024
    elif profile == "legacy-open":  # every page is rendered before the first request
        # ... but the closed and the deleted video's error page and the deleted root's 12022 pages
        gone_pages = sum(pages for v in gone for ref, pages in corpus.reply_threads(v) if ref.gone)
        assert gone_pages == sum(math.ceil(v.rcounts[i] / 20) for v in gone for i in v.gone_threads)
        assert stats["cache"]["pages"] == len(urls) - 2 - gone_pages


async def test_edges_errors_and_other_endpoints() -> None:
    corpus = Corpus.generate(seed=4, videos=6, comments=1200)
    closed, empty, deleted, video = corpus.videos[0], corpus.videos[1], corpus.videos[2], corpus.videos[3]
    thread = next(i for i, r in enumerate(video.rcounts) if r > 3)
    root = video.root_rpid(thread)
    last_page = math.ceil(video.roots / 20)
    async with serving(corpus, profile="legacy-open") as sim, session() as client:
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
        # a root that is not a comment of this video: 12006, as the service says
        assert (await api(f"/x/v2/reply/reply?type=1&oid={video.aid}&root=5&pn=1&ps=20"))["code"] == 12006
        other_root = corpus.videos[4].root_rpid(0)
        assert (await api(f"/x/v2/reply/reply?type=1&oid={video.aid}&root={other_root}&pn=1"))["code"] == 12006

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
    async with serving(corpus, profile="legacy-open") as sim, session() as client:
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
            for comment in (page["data"].get("top_replies") or []) + page["data"]["replies"]:
                seen.add(comment["rpid"])
                if comment.get("rcount", 0) <= 3:
                    seen.update(reply["rpid"] for reply in comment["replies"] or [])
    assert seen == corpus.expected_rpids()
    unreachable = {v.root_rpid(i) for v in capped for i in range(40, v.roots)}
    assert unreachable and unreachable.isdisjoint(corpus.expected_rpids())
    assert corpus.expected_comment_count() < sum(v.acount for v in corpus.videos)
