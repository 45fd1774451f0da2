"""Comments added while the simulator runs (POST /_sim/grow, Corpus.grow)."""

from __future__ import annotations

import orjson
import pytest

from scraper.simulator import Corpus
from tests.test_simulator_kit import LOGGED_IN, SESSION, cursor_params, get_json, serving, session, signed_cursor
from tests.test_simulator_real import crawl, keys_of


async def test_grow_adds_exactly_what_it_reports_and_a_crawl_finds_it() -> None:
    corpus = Corpus.generate(seed=11, videos=8, comments=3000)
    before = corpus.all_rpids()
    video, other = corpus.videos[3], corpus.videos[5]
    recent = corpus.list_rpid(video, 0)
    liked = corpus.list_rpid(other, 2)
    pinned = {str(video.pinned_rpid): 2} if video.has_pinned else {}
    body = {
        "videos": {str(video.aid): {"roots": 25, "replies": {str(recent): 6, **pinned}}, str(other.aid): {"roots": 1}},
        "likes": {str(liked): 99_999},
    }
    async with serving(corpus, session=SESSION) as sim, session(headers=LOGGED_IN) as client:
        first = await signed_cursor(
            client, sim.url, cursor_params(video.aid), keys=await keys_of(client, sim.url), cookies=LOGGED_IN["Cookie"]
        )  # cached before the change: must not be served stale after it
        async with client.post(sim.url + "/_sim/grow", data=orjson.dumps(body)) as response:
            assert response.status == 200
            added = orjson.loads(await response.read())["added"]
        new = set(added["rpids"])
        new_roots = added["videos"][str(video.aid)]["roots"]
        assert len(new) == 25 + 6 + 1 + sum(pinned.values()) and new.isdisjoint(before)
        assert min(new) > max(before)
        assert corpus.all_rpids() == before | new
        # newest first: the added roots lead the list, the last added first
        page = await signed_cursor(
            client, sim.url, cursor_params(video.aid), keys=await keys_of(client, sim.url), cookies=LOGGED_IN["Cookie"]
        )
        assert [r["rpid"] for r in page["data"]["replies"]] == new_roots[::-1][:20]
        assert page["data"]["cursor"]["all_count"] == first["data"]["cursor"]["all_count"] + 25 + 6 + sum(
            pinned.values()
        )
        assert min(r["ctime"] for r in page["data"]["replies"]) > max(r["ctime"] for r in first["data"]["replies"])
        thread = await get_json(client, f"{sim.url}/x/v2/reply/reply?type=1&oid={video.aid}&root={recent}&pn=1&ps=20")
        assert thread["data"]["root"]["rcount"] == video.rcounts[0] + 6
        assert {r["rpid"] for r in thread["data"]["replies"]} >= set(
            added["videos"][str(video.aid)]["replies"][str(recent)]
        )
        legacy = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={other.aid}&pn=1&ps=20&sort=0")
        assert legacy["data"]["page"]["acount"] == other.acount + 1
        shown = {r["rpid"]: r["like"] for r in legacy["data"]["replies"]}
        assert shown[liked] == 99_999
        rpids, requests = await crawl(client, sim.url, corpus)
        assert rpids == before | new
        assert requests == corpus.minimal_requests()
        # a bad request changes nothing
        async with client.post(sim.url + "/_sim/grow", data=b'{"videos": {"1": {"roots": 1}}}') as response:
            assert response.status == 400
        assert corpus.all_rpids() == before | new
        stats = sim.stats()
    assert "/_sim/grow" not in stats["by_endpoint"]


def test_corpus_grow_validates_before_changing_anything() -> None:
    corpus = Corpus.generate(seed=11, videos=8, comments=3000)
    before = corpus.all_rpids()
    closed = corpus.videos[0]
    ok = corpus.videos[3]
    with pytest.raises(ValueError, match="cannot take comments"):
        corpus.grow({ok.aid: {"roots": 2}, closed.aid: {"roots": 1}})
    with pytest.raises(ValueError, match="no root comment"):
        corpus.grow({ok.aid: {"roots": 2, "replies": {12345: 1}}})
    with pytest.raises(ValueError, match="no comment"):
        corpus.grow(likes={42: 1})
    assert corpus.all_rpids() == before
    grown = corpus.grow({ok.aid: {"roots": 2}})
    again = corpus.grow({ok.aid: {"replies": {grown.videos[ok.aid].roots[0]: 4}}})
    assert corpus.all_rpids() == before | grown.rpids() | again.rpids()
    assert max(again.rpids()) > max(grown.rpids()) > max(before)
