"""``root_paging = "auto"``: legacy pages in parallel to the service's depth, the cursor beyond.

Against the simulator's real-service profile over real HTTP (its legacy depth
set to 3 pages), with WBI keys and the device cookie in a real redis-server.
The whole crawl, with workers and the ledger, is in tests/test_real_service.py;
here, what each page hands on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.settings import HttpSettings, TargetSettings
from scraper.simulator.app import SimulatorOptions, start_simulator
from scraper.simulator.corpus import Corpus
from scraper.simulator.model import SimVideo
from scraper.targets.base import AdapterContext, PageResult
from scraper.targets.bilibili import BilibiliAdapter
from scraper.tasks import CURSOR, MAIN, Task
from scraper.videos import Video
from workers.fetch import fetch

SESSION = "auto-session"
CAP = 3  # the simulated service refuses legacy pages past 3 with -400
CORPUS = Corpus.generate(seed=21, videos=6, comments=5000, max_page=CAP)
Site = Callable[..., BilibiliAdapter]


@pytest.fixture
async def site(redis_url: str) -> AsyncIterator[tuple[Site, aiohttp.ClientSession]]:
    simulator = await start_simulator(SimulatorOptions(session=SESSION), corpus=CORPUS)
    client = aioredis.Redis.from_url(redis_url)
    async with aiohttp.ClientSession(headers={"User-Agent": HttpSettings().user_agent}) as session:

        def adapter(depth: int = CAP, cookie: str = f"SESSDATA={SESSION}") -> BilibiliAdapter:
            context = AdapterContext(client, TargetKeys("auto"), session, HttpSettings(cookie=cookie), cookie_host="")
            return BilibiliAdapter(TargetSettings(base_url=simulator.url, legacy_depth=depth), context)

        yield adapter, session
    await client.aclose()
    await simulator.close()


def _deep() -> SimVideo:
    video = max((v for v in CORPUS.videos if v.state == "ok"), key=lambda v: v.roots)
    assert video.roots > (CAP + 2) * 20, "a video two pages deeper than the service's legacy depth"
    return video


async def _get(adapter: BilibiliAdapter, session: aiohttp.ClientSession, task: Task) -> PageResult:
    request = await adapter.request(task)
    return adapter.parse(task, await fetch(session, request.url, request.headers))


async def test_page_one_fans_out_every_page_to_the_depth_and_one_probe(
    site: tuple[Site, aiohttp.ClientSession],
) -> None:
    make, session = site
    adapter, video = make(depth=2), _deep()
    [seed] = adapter.seed_tasks([Video(aid=video.aid, bvid=video.bvid)])
    assert (seed.kind, seed.page) == (MAIN, 1)
    result = await _get(adapter, session, seed)
    pages = [t.page for t in result.followups if t.kind == MAIN]
    assert pages == [3, 2]  # one probe past the depth (2), first, and the pages up to it, at once
    assert result.ledger.expected == video.acount and result.continuation is None


async def test_a_probe_that_answers_opens_every_page_left(site: tuple[Site, aiohttp.ClientSession]) -> None:
    """The service goes deeper than assumed (3 > 2): the rest at once, and the first page
    past the service's depth hands over to the cursor."""
    make, session = site
    adapter, video = make(depth=2), _deep()
    probe = await _get(adapter, session, Task(kind=MAIN, oid=video.aid, page=3, bvid=video.bvid))
    pages = -(-video.roots // 20)
    assert [t.page for t in probe.followups if t.kind == MAIN] == list(range(4, pages + 1))
    assert len(probe.records) >= 20 and probe.continuation is None
    refused = await _get(adapter, session, Task(kind=MAIN, oid=video.aid, page=4, bvid=video.bvid))
    assert refused.records == refused.followups == [] and refused.ledger.reason is None
    assert refused.ledger.refused_page == CAP + 1
    assert refused.ledger.tail == Task(kind=CURSOR, oid=video.aid, page=1, bvid=video.bvid, tail=CAP)


async def test_minus_400_within_the_assumed_depth_hands_over_too(site: tuple[Site, aiohttp.ClientSession]) -> None:
    make, session = site
    adapter, video = make(depth=CAP + 2), _deep()
    result = await _get(adapter, session, Task(kind=MAIN, oid=video.aid, page=CAP + 2, bvid=video.bvid))
    assert result.ledger.reason is None and result.ledger.refused_page == CAP + 2
    assert result.ledger.tail is not None and result.ledger.tail.tail == CAP + 1  # the ledger keeps the lowest


async def test_the_tail_chain_tells_the_ledger_which_page_it_is(site: tuple[Site, aiohttp.ClientSession]) -> None:
    make, session = site
    adapter, video = make(), _deep()
    task = Task(kind=CURSOR, oid=video.aid, page=1, bvid=video.bvid, tail=CAP)
    for page in range(1, CAP + 2):
        result = await _get(adapter, session, task)
        # (-1, records, page): known if the page lies within the legacy depth (the settle script knows it).
        assert (-1, len(result.records), page) in result.ledger.threads
        # Threads of the tail are rechecked (opened unless the legacy pages opened them already).
        assert all(t[2] < 0 for t in result.ledger.threads if t[0] > 0)
        assert result.followups == []  # its threads come from the settle script's recheck
        assert result.continuation is not None and result.continuation.tail == CAP
        task = result.continuation


async def test_without_login_page_two_is_asked_alone_and_is_gated(site: tuple[Site, aiohttp.ClientSession]) -> None:
    make, session = site
    adapter, video = make(cookie=""), _deep()
    result = await _get(adapter, session, Task(kind=MAIN, oid=video.aid, page=1, bvid=video.bvid))
    assert len([r for r in result.records if r["root"] == 0]) >= 20  # page 1 is shown to everyone
    [second] = [t for t in result.followups if t.kind == MAIN]  # page 2 alone: is the gate there?
    assert second.page == 2
    gated = await _get(adapter, session, second)
    assert gated.records == [] and gated.followups == [] and gated.continuation is None
    assert gated.ledger.reason is not None and gated.ledger.reason[0] == "login"


async def test_no_assumed_depth_fans_out_every_page(site: tuple[Site, aiohttp.ClientSession]) -> None:
    make, session = site
    adapter, video = make(depth=0), _deep()
    result = await _get(adapter, session, Task(kind=MAIN, oid=video.aid, page=1, bvid=video.bvid))
    pages = sorted(t.page for t in result.followups if t.kind == MAIN)
    assert pages == list(range(2, -(-video.roots // 20) + 1))
