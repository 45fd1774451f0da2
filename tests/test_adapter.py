"""The Bilibili adapter on real simulator payloads, fetched over real HTTP."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from scraper.errors import BadPayload, PageUnavailable, ServerError, Throttled, TransientError
from scraper.settings import TargetSettings
from scraper.simulator.app import SimulatorOptions, start_simulator
from scraper.simulator.corpus import Corpus
from scraper.targets.bilibili import BilibiliAdapter
from scraper.tasks import MAIN, REPLY, Task
from workers.fetch import fetch

CORPUS = Corpus.generate(seed=2, videos=5, comments=12000, max_page=60)


@pytest.fixture
async def site() -> AsyncIterator[tuple[BilibiliAdapter, aiohttp.ClientSession]]:
    simulator = await start_simulator(SimulatorOptions(), corpus=CORPUS)
    adapter = BilibiliAdapter(TargetSettings(base_url=simulator.url))
    async with aiohttp.ClientSession() as session:
        yield adapter, session
    await simulator.close()


def _deepest() -> object:
    return max((v for v in CORPUS.videos if v.state == "ok"), key=lambda v: v.roots)


async def test_page_one_fans_out_a_window_and_sub_reply_pages(
    site: tuple[BilibiliAdapter, aiohttp.ClientSession],
) -> None:
    adapter, session = site
    video = _deepest()
    task = Task(kind=MAIN, oid=video.aid, page=1, bvid=video.bvid)
    payload = orjson.loads(await fetch(session, adapter.url(task)))
    result = adapter.parse(task, await fetch(session, adapter.url(task)))

    pages = math.ceil(video.roots / 20)
    main = sorted(t.page for t in result.followups if t.kind == MAIN)
    assert main == list(range(2, min(pages, 51) + 1))
    expected_replies = []
    for root in payload["data"]["replies"]:
        preview = root["replies"] or []
        if root["rcount"] > len(preview):
            expected_replies += [(root["rpid"], p) for p in range(1, math.ceil(root["rcount"] / 20) + 1)]
    assert sorted((t.root, t.page) for t in result.followups if t.kind == REPLY) == sorted(expected_replies)
    assert all(t.bvid == video.bvid and t.oid == video.aid for t in result.followups)

    roots = [r["rpid"] for r in payload["data"]["replies"]]
    complete_previews = [
        c["rpid"]
        for r in payload["data"]["replies"]
        if r["rcount"] <= len(r["replies"] or [])
        for c in r["replies"] or []
    ]
    assert [r["rpid"] for r in result.records] == [*_interleave(payload)]
    assert {r["rpid"] for r in result.records} == set(roots) | set(complete_previews)
    first = result.records[0]
    root = payload["data"]["replies"][0]
    assert first == {
        "rpid": root["rpid"],
        "oid": video.aid,
        "bvid": video.bvid,
        "root": 0,
        "parent": 0,
        "mid": root["mid"],
        "uname": root["member"]["uname"],
        "level": root["member"]["level_info"]["current_level"],
        "message": root["content"]["message"],
        "ctime": root["ctime"],
        "like": root["like"],
        "rcount": root["rcount"],
    }


def _interleave(payload: dict) -> list[int]:
    """Roots in page order, each followed by its preview when the preview is complete."""
    order = []
    for root in payload["data"]["replies"]:
        order.append(root["rpid"])
        preview = root["replies"] or []
        if root["rcount"] <= len(preview):
            order += [c["rpid"] for c in preview]
    return order


async def test_window_page_opens_the_next_window(site: tuple[BilibiliAdapter, aiohttp.ClientSession]) -> None:
    adapter, session = site
    video = _deepest()
    pages = math.ceil(video.roots / 20)
    assert pages > 51, "the corpus needs a deep video"
    task = Task(kind=MAIN, oid=video.aid, page=51, bvid=video.bvid)
    result = adapter.parse(task, await fetch(session, adapter.url(task)))
    assert sorted(t.page for t in result.followups if t.kind == MAIN) == list(range(52, min(pages, 101) + 1))
    middle = Task(kind=MAIN, oid=video.aid, page=7, bvid=video.bvid)
    assert [
        t for t in adapter.parse(middle, await fetch(session, adapter.url(middle))).followups if t.kind == MAIN
    ] == []


async def test_reply_pages_and_the_end_of_a_sequence(site: tuple[BilibiliAdapter, aiohttp.ClientSession]) -> None:
    adapter, session = site
    video = _deepest()
    page = orjson.loads(await fetch(session, adapter.url(Task(kind=MAIN, oid=video.aid, page=1))))
    root = max(page["data"]["replies"], key=lambda r: r["rcount"])
    task = Task(kind=REPLY, oid=video.aid, page=1, root=root["rpid"], bvid=video.bvid)
    result = adapter.parse(task, await fetch(session, adapter.url(task)))
    assert len(result.records) == min(root["rcount"], 20)
    assert all(r["root"] == root["rpid"] and r["parent"] != 0 for r in result.records)
    assert result.followups == []
    past = Task(kind=REPLY, oid=video.aid, page=math.ceil(root["rcount"] / 20) + 1, root=root["rpid"])
    assert adapter.parse(past, await fetch(session, adapter.url(past))).records == []


@pytest.mark.parametrize(("state", "kind"), [("closed", "closed"), ("deleted", "deleted")])
async def test_final_states(site: tuple[BilibiliAdapter, aiohttp.ClientSession], state: str, kind: str) -> None:
    adapter, session = site
    video = next(v for v in CORPUS.videos if v.state == state)
    task = Task(kind=MAIN, oid=video.aid, page=1)
    with pytest.raises(PageUnavailable) as info:
        adapter.parse(task, await fetch(session, adapter.url(task)))
    assert info.value.kind == kind


async def test_depth_cap(site: tuple[BilibiliAdapter, aiohttp.ClientSession]) -> None:
    adapter, session = site
    video = _deepest()
    task = Task(kind=MAIN, oid=video.aid, page=61)
    with pytest.raises(PageUnavailable) as info:
        adapter.parse(task, await fetch(session, adapter.url(task)))
    assert info.value.kind == "depth_cap"


def _body(code: int, **data: object) -> bytes:
    return orjson.dumps({"code": code, "message": "m", **({"data": data} if data else {})})


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        (_body(-412), Throttled, "banned"),
        (_body(-352), Throttled, "risk_check"),
        (_body(-799), Throttled, "too_frequent"),
        (_body(-503), ServerError, "overloaded"),
        (_body(-509), ServerError, "overloaded"),
        (_body(-12345), TransientError, "api_code"),
        (b'{"code": 0, "data": {"page": {"cou', BadPayload, "bad_json"),
        (b"<html>gateway</html>", BadPayload, "bad_json"),
        (b"[1, 2]", BadPayload, "bad_json"),
        (_body(0), BadPayload, "bad_shape"),
        (_body(0, replies=None, page={"num": 2, "size": 20, "count": 90}), Throttled, "soft_block"),
        (_body(0, replies=[{"rpid": "x"}], page={"num": 2, "size": 20, "count": 90}), BadPayload, "bad_shape"),
    ],
)
def test_error_shapes(body: bytes, error: type[Exception], reason: str) -> None:
    adapter = BilibiliAdapter(TargetSettings())
    with pytest.raises(error) as info:
        adapter.parse(Task(kind=MAIN, oid=1, page=2), body)
    assert info.value.reason == reason  # type: ignore[attr-defined]


def test_page_one_without_count_is_bad_shape() -> None:
    with pytest.raises(BadPayload):
        BilibiliAdapter(TargetSettings()).parse(Task(kind=MAIN, oid=1, page=1), _body(0, replies=[]))
