"""The "real" profile: WBI signatures, device identity, login gating, cursor paging, pinned comments."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from scraper.simulator import Corpus
from scraper.targets.wbi import keys_from_nav, sign
from tests.test_simulator_kit import (
    BROWSER_UA,
    LOGGED_IN,
    SESSION,
    check_comment,
    cursor_params,
    get_json,
    serving,
    session,
    signed_cursor,
)


def small_corpus() -> Corpus:
    """8 videos: closed, empty, missing, a long pinned thread, a deleted root (12022)."""
    return Corpus.generate(seed=11, videos=8, comments=3000)


async def keys_of(client: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    return keys_from_nav(await get_json(client, base + "/x/web-interface/nav"))


async def walk_cursor(
    client: aiohttp.ClientSession, base: str, keys: tuple[str, str], oid: int, *, mode: int = 2
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Every page of one video's cursor chain: (roots in order, pinned seen, requests)."""
    roots: list[dict[str, Any]] = []
    pinned: list[dict[str, Any]] = []
    offset = ""
    requests = 0
    while True:
        params = cursor_params(oid, mode=mode, next_offset=offset)
        page = await signed_cursor(client, base, params, keys=keys, cookies=LOGGED_IN["Cookie"])
        requests += 1
        if page["code"] != 0:
            return roots, pinned, requests
        data = page["data"]
        cursor = data["cursor"]
        assert cursor["mode"] == mode and cursor["is_begin"] == (offset == "")
        if data["top"]["upper"] is not None:
            assert offset == "", "the pinned comment comes on the first page only"
            assert data["top_replies"] == [data["top"]["upper"]]
            pinned.append(data["top"]["upper"])
        else:
            assert data["top_replies"] == []
        roots.extend(data["replies"])
        if cursor["is_end"]:
            assert cursor["pagination_reply"] == {}
            return roots, pinned, requests
        assert len(data["replies"]) == 20
        offset = cursor["pagination_reply"]["next_offset"]
        inner = orjson.loads(offset)
        assert inner["type"] == (3 if mode == 2 else 1) and inner["direction"] == 1


async def thread_rpids(
    client: aiohttp.ClientSession, base: str, oid: int, root: dict[str, Any]
) -> tuple[set[int], int]:
    """The replies of one root (preview when it holds them all, else every page): (rpids, requests)."""
    preview = root["replies"] or []
    if root["rcount"] <= len(preview):
        return {r["rpid"] for r in preview}, 0
    found: set[int] = set()
    pn = 1
    while True:
        page = await get_json(client, f"{base}/x/v2/reply/reply?type=1&oid={oid}&root={root['rpid']}&pn={pn}&ps=20")
        if page["code"] == 12022:
            return found, pn
        assert page["code"] == 0 and page["data"]["page"]["count"] == root["rcount"]
        for reply in page["data"]["replies"]:
            check_comment(reply, oid=oid, root=root["rpid"])
            found.add(reply["rpid"])
        if pn * 20 >= root["rcount"]:
            return found, pn
        pn += 1


async def crawl(client: aiohttp.ClientSession, base: str, corpus: Corpus, *, mode: int = 2) -> tuple[set[int], int]:
    """A complete logged-in crawl through the cursor endpoint: (rpids, requests)."""
    keys = await keys_of(client, base)
    spi = await get_json(client, base + "/x/frontend/finger/spi")
    assert spi["code"] == 0
    requests = 2
    rpids: set[int] = set()
    for video in corpus.videos:
        roots, pinned, made = await walk_cursor(client, base, keys, video.aid, mode=mode)
        requests += made
        if video.state == "ok" and mode == 2:
            # newest first, each root once, the pinned one never in the list
            assert [r["rpid"] for r in roots] == [corpus.list_rpid(video, p) for p in range(corpus.list_len(video))]
            assert all(a["ctime"] >= b["ctime"] for a, b in zip(roots, roots[1:]))
        assert [p["rpid"] for p in pinned] == ([video.pinned_rpid] if video.has_pinned else [])
        assert len({r["rpid"] for r in roots}) == len(roots) == corpus.list_len(video)
        for root in pinned + roots:
            check_comment(root, oid=video.aid, root=0)
            rpids.add(root["rpid"])
            replies, made = await thread_rpids(client, base, video.aid, root)
            rpids |= replies
            requests += made
    return rpids, requests


async def test_nav_spi_and_home_hand_out_keys_and_device_cookies() -> None:
    corpus = small_corpus()
    async with serving(corpus, session=SESSION) as sim, session() as client:
        keys = await get_json(client, sim.url + "/_sim/keys")
        nav = await get_json(client, sim.url + "/x/web-interface/nav")
        assert nav["code"] == -101 and nav["data"]["isLogin"] is False
        assert keys_from_nav(nav) == (keys["img_key"], keys["sub_key"])
        assert len(keys["img_key"]) == len(keys["sub_key"]) == 32
        async with client.get(sim.url + "/x/web-interface/nav", headers={"Cookie": f"SESSDATA={SESSION}"}) as r:
            logged = orjson.loads(await r.read())
        assert logged["code"] == 0 and logged["data"]["isLogin"] is True
        assert keys_from_nav(logged) == (keys["img_key"], keys["sub_key"])
        spi = await get_json(client, sim.url + "/x/frontend/finger/spi")
        assert spi["code"] == 0 and spi["data"]["b_3"].endswith("infoc") and spi["data"]["b_4"]
        async with client.get(sim.url + "/", headers={"User-Agent": BROWSER_UA}) as r:
            assert r.status == 200 and r.cookies["buvid3"].value.endswith("infoc") and r.cookies["b_nut"].value
        async with client.get(sim.url + "/", headers={"User-Agent": "python-requests/2.32"}) as r:
            assert r.status == 200 and "buvid3" not in r.cookies
        stats = sim.stats()
    assert stats["by_code"] == {"-101": 1, "0": 2, "http 200": 2}
    assert stats["by_endpoint"]["/x/web-interface/nav"] == {"requests": 2, "-101": 1, "0": 1}


async def test_wbi_signature_is_checked_and_keys_rotate() -> None:
    corpus = small_corpus()
    oid = corpus.videos[3].aid
    async with serving(corpus, session=SESSION, key_rotate_s=0) as sim, session(headers=LOGGED_IN) as client:
        base = sim.url
        keys = await keys_of(client, base)
        assert (await signed_cursor(client, base, cursor_params(oid), keys=keys))["code"] == 0
        # wrong signature, missing signature, a parameter changed after signing
        query = sign(cursor_params(oid), *keys, wts=1_702_204_169)
        for broken in (
            {**query, "w_rid": "0" * 32},
            {k: v for k, v in query.items() if k != "w_rid"},
            {**query, "oid": str(corpus.videos[4].aid)},
        ):
            async with client.get(base + "/x/v2/reply/wbi/main", params=broken) as response:
                assert orjson.loads(await response.read())["code"] == -403
        # the pagination_str is signed too
        async with client.get(base + "/x/v2/reply/wbi/main", params={**query, "pagination_str": "{}"}) as response:
            assert orjson.loads(await response.read())["code"] == -403
        async with client.post(base + "/_sim/rotate") as response:
            rotated = orjson.loads(await response.read())
        assert (rotated["img_key"], rotated["sub_key"]) != keys
        assert (await signed_cursor(client, base, cursor_params(oid), keys=keys))["code"] == -403
        new_keys = await keys_of(client, base)
        assert new_keys == (rotated["img_key"], rotated["sub_key"])
        assert (await signed_cursor(client, base, cursor_params(oid), keys=new_keys))["code"] == 0
        stats = sim.stats()
    assert stats["by_endpoint"]["/x/v2/reply/wbi/main"] == {"requests": 7, "0": 2, "-403": 5}


async def test_keys_follow_the_clock_and_the_seed() -> None:
    from scraper.simulator.access import WbiKeys  # noqa: PLC0415

    keys = WbiKeys(seed=1, rotate_s=10)
    assert keys.epoch(now=1_000_005) == keys.epoch(now=1_000_009) != keys.epoch(now=1_000_010)
    assert WbiKeys(seed=1, rotate_s=0).current() == WbiKeys(seed=1, rotate_s=0).current()
    assert WbiKeys(seed=1, rotate_s=0).current() != WbiKeys(seed=2, rotate_s=0).current()


async def test_risk_control_without_buvid3_or_with_a_non_browser_agent() -> None:
    corpus = small_corpus()
    oid = corpus.videos[3].aid
    async with serving(corpus, session=SESSION) as sim, session() as client:
        keys = await keys_of(client, sim.url)
        no_buvid = await signed_cursor(client, sim.url, cursor_params(oid), keys=keys, cookies=f"SESSDATA={SESSION}")
        assert no_buvid["code"] == -352 and no_buvid["data"]["v_voucher"].startswith("voucher_")
        bot = await signed_cursor(client, sim.url, cursor_params(oid), keys=keys, user_agent="python-aiohttp/3.11")
        assert bot["code"] == -352
        ok = await signed_cursor(client, sim.url, cursor_params(oid), keys=keys, cookies=LOGGED_IN["Cookie"])
        assert ok["code"] == 0
        # legacy and thread endpoints need no device cookie
        legacy = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={oid}&pn=1&ps=20&sort=0")
        assert legacy["code"] == 0 and legacy["data"]["replies"]
        assert sim.stats()["by_code"]["-352"] == 2


async def test_without_login_only_a_sliver_is_visible() -> None:
    corpus = small_corpus()
    video = max(corpus.videos, key=lambda v: v.roots)
    ref, _ = next((r, p) for r, p in corpus.threads(video) if p > 1 and not r.gone)
    for cookie, sees_all in (
        ("buvid3=X", False),
        (f"buvid3=X; SESSDATA=wrong-{SESSION}", False),
        (LOGGED_IN["Cookie"], True),
    ):
        headers = {"User-Agent": BROWSER_UA, "Cookie": cookie}
        async with serving(corpus, session=SESSION) as sim, session(headers=headers) as client:
            keys = await keys_of(client, sim.url)
            first = await signed_cursor(client, sim.url, cursor_params(video.aid), keys=keys, cookies=cookie)
            cursor = first["data"]["cursor"]
            assert cursor["all_count"] == video.acount  # the total is never hidden
            legacy2 = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={video.aid}&pn=2&ps=20&sort=0")
            thread2 = await get_json(
                client, f"{sim.url}/x/v2/reply/reply?type=1&oid={video.aid}&root={ref.rpid}&pn=2&ps=20"
            )
            if sees_all:
                assert len(first["data"]["replies"]) == 20 and cursor["is_end"] is False
                assert len(legacy2["data"]["replies"]) == 20
                assert thread2["data"]["replies"]
            else:
                assert len(first["data"]["replies"]) == 3 and cursor["is_end"] is True
                assert cursor["pagination_reply"] == {}
                assert legacy2["code"] == 0 and legacy2["data"]["replies"] is None
                assert legacy2["data"]["page"] == {"num": 0, "size": 0, "count": 0, "acount": 0}
                assert thread2["code"] == 0 and thread2["data"]["replies"] is None
            legacy1 = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={video.aid}&pn=1&ps=20&sort=0")
            assert len(legacy1["data"]["replies"]) == 20  # page 1 for everyone


async def test_a_complete_cursor_crawl_gets_every_comment_in_the_fewest_requests() -> None:
    corpus = small_corpus()
    assert any(v.has_pinned and v.pinned_replies > 20 for v in corpus.videos)
    async with serving(corpus, session=SESSION) as sim, session(headers=LOGGED_IN) as client:
        rpids, requests = await crawl(client, sim.url, corpus)
        stats = sim.stats()
    assert rpids == corpus.all_rpids()
    assert len(rpids) == 3000 - sum(v.rcounts[i] for v in corpus.videos for i in v.gone_threads)
    assert requests == corpus.minimal_requests() == stats["requests"]
    gone = sum(len(v.gone_threads) for v in corpus.videos)
    # every answer is a page but the closed video, the missing one and each deleted root
    assert stats["by_code"] == {"-404": 1, "0": requests - 2 - gone, "12002": 1, "12022": gone}


async def test_hot_mode_pages_reach_every_root_too() -> None:
    corpus = small_corpus()
    async with serving(corpus, session=SESSION) as sim, session(headers=LOGGED_IN) as client:
        keys = await keys_of(client, sim.url)
        for video in corpus.videos[3:]:
            roots, _, _ = await walk_cursor(client, sim.url, keys, video.aid, mode=3)
            assert sorted(r["rpid"] for r in roots) == sorted(
                corpus.list_rpid(video, p) for p in range(corpus.list_len(video))
            )
            assert all(a["like"] >= b["like"] for a, b in zip(roots, roots[1:]))


async def test_legacy_depth_cap_is_on_by_default() -> None:
    corpus = Corpus.generate(seed=2, videos=4, comments=30_000)
    deep = corpus.videos[3]
    assert deep.roots > 250 * 20
    async with serving(corpus, session=SESSION) as sim, session(headers=LOGGED_IN) as client:
        last = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={deep.aid}&pn=250&ps=20&sort=0")
        past = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={deep.aid}&pn=251&ps=20&sort=0")
    assert last["code"] == 0 and len(last["data"]["replies"]) == 20
    assert past == {"code": -400, "message": "max offset exceeded", "ttl": 1}
    async with serving(corpus, session=SESSION, max_page=0) as sim, session(headers=LOGGED_IN) as client:
        past = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={deep.aid}&pn=251&ps=20&sort=0")
    assert past["code"] == 0 and past["data"]["replies"]


async def test_legacy_open_profile_has_no_gates() -> None:
    corpus = small_corpus()
    oid = corpus.videos[3].aid
    async with serving(corpus, profile="legacy-open") as sim, session() as client:
        unsigned = await get_json(client, f"{sim.url}/x/v2/reply/wbi/main?oid={oid}&type=1&mode=2")
        assert unsigned["code"] == 0 and len(unsigned["data"]["replies"]) == 20
        assert unsigned["data"]["cursor"]["is_end"] is False
        page2 = await get_json(client, f"{sim.url}/x/v2/reply?type=1&oid={oid}&pn=2&ps=20&sort=0")
        assert page2["data"]["replies"]
