"""The Bilibili adapter on real simulator payloads, fetched over real HTTP.

Legacy pages against the simulator's open profile (what they check does not
depend on gating); the cursor chain against its real-service profile, with
WBI keys and the device cookie shared through a real redis-server.
"""

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
from scraper.targets.base import AdapterContext, CredentialsRejected
from scraper.targets.bilibili import BilibiliAdapter
from scraper.tasks import CURSOR, MAIN, REPLY, Task
from scraper.videos import Video
from workers.fetch import fetch

CORPUS = Corpus.generate(seed=2, videos=5, comments=12000, max_page=60)


@pytest.fixture
async def site() -> AsyncIterator[tuple[BilibiliAdapter, aiohttp.ClientSession]]:
    simulator = await start_simulator(SimulatorOptions(profile="legacy-open"), corpus=CORPUS)
    adapter = BilibiliAdapter(TargetSettings(base_url=simulator.url, root_paging="legacy"))
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
    listed = _listed(payload)
    expected_replies = []
    for root in listed:
        preview = root["replies"] or []
        if root["rcount"] > len(preview):
            expected_replies += [(root["rpid"], p) for p in range(1, math.ceil(root["rcount"] / 20) + 1)]
    assert sorted((t.root, t.page) for t in result.followups if t.kind == REPLY) == sorted(expected_replies)
    assert all(t.bvid == video.bvid and t.oid == video.aid for t in result.followups)

    roots = [r["rpid"] for r in listed]
    complete_previews = [
        c["rpid"] for r in listed if r["rcount"] <= len(r["replies"] or []) for c in r["replies"] or []
    ]
    assert [r["rpid"] for r in result.records] == [*_interleave(payload)]
    assert {r["rpid"] for r in result.records} == set(roots) | set(complete_previews)
    first = result.records[0]
    root = listed[0]
    assert first.pop("crawled_at") > 1_700_000_000_000  # unix ms of the fetch
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


def _listed(payload: dict) -> list[dict]:
    """Page 1's roots as a user sees them: pinned comments (outside ``replies``) first."""
    data = payload["data"]
    pinned = [(data.get("top") or {}).get("upper"), *(data.get("top_replies") or [])]
    pinned.append((data.get("upper") or {}).get("top"))
    unique = {c["rpid"]: c for c in pinned if c}
    return [*unique.values(), *data["replies"]]


def _interleave(payload: dict) -> list[int]:
    """Roots in page order, each followed by its preview when the preview is complete."""
    order = []
    for root in _listed(payload):
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
        (_body(-352), CredentialsRejected, "risk_check"),
        (_body(-403), CredentialsRejected, "wbi_rejected"),
        (_body(-799), Throttled, "too_frequent"),
        (_body(-503), ServerError, "overloaded"),
        (_body(-509), ServerError, "overloaded"),
        (_body(-12345), TransientError, "api_code"),
        (b'{"code": 0, "data": {"page": {"cou', BadPayload, "bad_json"),
        (b"<html>gateway</html>", BadPayload, "bad_json"),
        (b"[1, 2]", BadPayload, "bad_json"),
        (_body(0), BadPayload, "bad_shape"),
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


def test_replies_null_past_page_one_is_a_login_reason_not_an_end() -> None:
    body = _body(0, replies=None, page={"num": 2, "size": 20, "count": 90})
    result = BilibiliAdapter(TargetSettings(root_paging="legacy")).parse(Task(kind=MAIN, oid=1, page=2), body)
    assert result.records == [] and result.followups == []
    assert result.ledger.reason is not None and result.ledger.reason[0] == "login"


SESSION = "adapter-session"


@pytest.fixture
async def real_site(redis_url: str) -> AsyncIterator[tuple[BilibiliAdapter, aiohttp.ClientSession, Corpus]]:
    import redis.asyncio as aioredis

    from scraper.keys import TargetKeys
    from scraper.settings import HttpSettings

    corpus = Corpus.generate(seed=4, videos=6, comments=4000)
    simulator = await start_simulator(SimulatorOptions(session=SESSION), corpus=corpus)
    client = aioredis.Redis.from_url(redis_url)
    http = HttpSettings(cookie=f"SESSDATA={SESSION}")
    async with aiohttp.ClientSession(headers={"User-Agent": http.user_agent}) as session:
        context = AdapterContext(client, TargetKeys("adapter"), session, http, cookie_host="")
        yield BilibiliAdapter(TargetSettings(base_url=simulator.url, root_paging="cursor"), context), session, corpus
    await client.aclose()
    await simulator.close()


async def test_cursor_chain_walks_every_root_and_opens_threads(
    real_site: tuple[BilibiliAdapter, aiohttp.ClientSession, Corpus],
) -> None:
    adapter, session, corpus = real_site
    video = max((v for v in corpus.videos if v.state == "ok" and v.has_pinned), key=lambda v: v.roots)
    [task] = adapter.seed_tasks([Video(aid=video.aid, bvid=video.bvid)])
    assert task.kind == CURSOR
    roots: list[int] = []
    threads: list[tuple[int, int, int]] = []
    first = True
    while True:
        request = await adapter.request(task)
        assert "w_rid=" in request.url and "SESSDATA=" in request.headers["Cookie"]
        result = adapter.parse(task, await fetch(session, request.url, request.headers))
        if first:
            assert result.ledger.expected == video.acount  # all_count: roots and replies
            assert result.records[0]["rpid"] == video.pinned_rpid  # pinned first, from data.top
            first = False
        roots += [r["rpid"] for r in result.records if r["root"] == 0]
        threads += result.ledger.threads
        assert all(t.kind == REPLY for t in result.followups)  # the chain goes on by continuation
        if result.continuation is None:
            assert result.ledger.short_code == "short"  # only used if fewer than announced arrived
            break
        task = result.continuation
        assert task.offset and task.page > 1
    assert len(roots) == len(set(roots)) == video.roots + 1  # every listed root, plus the pinned one
    assert video.pinned_rpid in {root for root, _, _ in threads}


async def test_cursor_without_keys_or_context_is_transient() -> None:
    adapter = BilibiliAdapter(TargetSettings())
    with pytest.raises(TransientError):
        await adapter.request(Task(kind=CURSOR, oid=1, page=1))
