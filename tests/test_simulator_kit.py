"""Helpers shared by the simulator's tests (no tests here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from scraper.simulator import Corpus, RunningSimulator, SimulatorOptions, start_simulator
from scraper.targets.wbi import keys_from_nav, sign

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
SESSION = "sim-session-0123456789"
LOGGED_IN = {"Cookie": f"SESSDATA={SESSION}; buvid3=TEST-BUVID3infoc", "User-Agent": BROWSER_UA}


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
async def session(
    fresh_connections: bool = False, headers: dict[str, str] | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    # fresh_connections: a connection the server dropped is never handed to the
    # next request, so each error belongs to the request that met the fault.
    connector = aiohttp.TCPConnector(limit=32, force_close=fresh_connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as client:
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
    elif comment["rcount"] and comment["replies"] is not None:
        assert len(comment["replies"]) == min(3, comment["rcount"])
    elif comment["rcount"]:
        assert comment["rcount"] > 3  # a root deleted after listing: no preview, its thread answers 12022
    else:
        assert comment["replies"] is None


async def signed_cursor(
    client: aiohttp.ClientSession,
    base: str,
    params: dict[str, str | int],
    *,
    keys: tuple[str, str] | None = None,
    cookies: str = "buvid3=TEST-BUVID3infoc",
    user_agent: str = BROWSER_UA,
    wts: int = 1_702_204_169,
) -> Any:
    """One /x/v2/reply/wbi/main request signed with the nav's keys (or ``keys``)."""
    headers = {"User-Agent": user_agent, "Cookie": cookies}
    if keys is None:
        async with client.get(base + "/x/web-interface/nav", headers=headers) as response:
            keys = keys_from_nav(orjson.loads(await response.read()))
    query = sign(params, keys[0], keys[1], wts)
    async with client.get(base + "/x/v2/reply/wbi/main", params=query, headers=headers) as response:
        assert response.status == 200
        return orjson.loads(await response.read())


def cursor_params(oid: int, *, mode: int = 2, next_offset: str = "") -> dict[str, str | int]:
    return {
        "oid": oid,
        "type": 1,
        "mode": mode,
        "pagination_str": orjson.dumps({"offset": next_offset}).decode(),
        "plat": 1,
        "web_location": 1315875,
    }


__all__ = [
    "BROWSER_UA",
    "MEMBER_KEYS",
    "ROOT_KEYS",
    "LOGGED_IN",
    "SESSION",
    "Corpus",
    "check_comment",
    "cursor_params",
    "fetch_all",
    "get_json",
    "serving",
    "session",
    "signed_cursor",
]
