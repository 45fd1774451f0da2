"""Faults, rate limits, latency and the entry points of the simulator."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from scraper.cli import build_parser
from scraper.simulator import (
    Corpus,
    SimulatorOptions,
    build_app,
)
from scraper.simulator.app import SIMULATOR_KEY
from scraper.videos import read_video_list
from tests.conftest import free_port
from tests.helpers import cli_env, run_cli, simulator
from tests.test_simulator_kit import (
    get_json,
    serving,
    session,
)

REPO = Path(__file__).resolve().parent.parent


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
        # pages whose right answer is an error code: closed and deleted videos, deleted roots
        broken = {f"oid={v.aid}&" for v in corpus.videos if v.state in ("closed", "deleted")}
        broken |= {f"root={v.root_rpid(i)}&" for v in corpus.videos for i in v.gone_threads}
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
            f"simulator listening on http://127.0.0.1:{port} "
            f"(6 videos, 800 comments, {corpus.expected_pages()} pages, profile real)"
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


def test_scraper_simulate_flags_reach_the_simulator(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    help_run = run_cli(["simulate", "--help"], env)
    assert help_run.returncode == 0
    for flag in ("--profile {real,legacy-open}", "--session SESSION", "--key-rotate-s", "--max-page"):
        assert flag in help_run.stdout
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [a.dest for a in subparsers.choices["simulate"]._actions if not a.help]
    assert undocumented == []  # every option says what it does
    args = ["--seed", "4", "--videos", "5", "--comments", "400", "--session", "cli-session", "--key-rotate-s", "0"]
    with simulator(env, *args) as url:

        async def probe() -> tuple[Any, Any, Any]:
            async with session(headers={"Cookie": "SESSDATA=cli-session"}) as client:
                nav = await get_json(client, url + "/x/web-interface/nav")
                keys = await get_json(client, url + "/_sim/keys")
                aid = Corpus.generate(seed=4, videos=5, comments=400).videos[3].aid
                page2 = await get_json(client, f"{url}/x/v2/reply?type=1&oid={aid}&pn=2&ps=20&sort=0")
                return nav, keys, page2

        nav, keys, page2 = asyncio.run(probe())
    assert nav["code"] == 0 and nav["data"]["isLogin"] is True
    assert keys["rotate_s"] == 0
    assert page2["code"] == 0 and page2["data"]["page"]["num"] == 2  # logged in: not the empty page
    with simulator(env, "--seed", "4", "--videos", "5", "--comments", "400", "--profile", "legacy-open") as url:

        async def unsigned() -> Any:
            async with session() as client:
                aid = Corpus.generate(seed=4, videos=5, comments=400).videos[3].aid
                return await get_json(client, f"{url}/x/v2/reply/wbi/main?type=1&oid={aid}&mode=2")

        assert asyncio.run(unsigned())["code"] == 0
