"""Crawling a simulator that behaves like the real service (issue 10).

WBI-signed cursor pages with keys that rotate, buvid3 from finger/spi, login
gating, the legacy depth cap, pinned comments outside the list, closed and
missing videos. With the session cookie every comment arrives and every video
is reported complete; without it the crawl ends and says why per video.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from scraper.keys import TargetKeys
from scraper.simulator.corpus import Corpus
from scraper.simulator.options import SimulatorOptions
from tests.helpers import assert_exported_exactly, cli_env, coordinate, run_cli, start_cli, stats_json, wait_for
from tests.sim_thread import endpoint_requests, rotating_keys, served, write_video_list

SESSION = "s3ss-9f2c-secret"  # the value the simulator accepts as SESSDATA
KEYS = TargetKeys("video-list")
LEGACY_CAP = 3  # legacy pages past 3 answer -400: a video with more than 60 roots is "deeper"


def _corpus() -> Corpus:
    corpus = Corpus.generate(seed=11, videos=9, comments=6000, max_page=LEGACY_CAP)
    states = {v.state for v in corpus.videos}
    assert {"closed", "deleted"} <= states
    assert any(v.roots > LEGACY_CAP * 20 for v in corpus.videos), "a video deeper than the legacy cap"
    assert any(v.pinned_replies > 20 for v in corpus.videos), "a pinned comment with a long thread"
    return corpus


def _work(env: dict[str, str], common: list[str], out: Path, *extra: str) -> str:
    flags = ["--processes", "2", "--concurrency", "16", "--rate-limit", "0", "--burst"]
    result = run_cli(["work", *common, *flags, "--output-dir", str(out), *extra], env, timeout=180)
    assert result.returncode in (0, 3), result.stderr
    return result.stdout + result.stderr


def _report(env: dict[str, str], common: list[str]) -> tuple[int, dict[str, Any], str]:
    result = run_cli(["report", *common, "--json"], env)
    text = run_cli(["report", *common], env)
    return result.returncode, orjson.loads(result.stdout), result.stdout + result.stderr + text.stdout + text.stderr


@pytest.mark.parametrize(
    ("paging", "depth"),
    [
        # auto, assuming the real depth (250): pages 4+ of the deeper videos answer -400 at
        # once, the lowest refusal sets the ledger's depth and the cursor takes over past it.
        ("auto", "250"),
        # auto, assuming 2: page 3 is probed (the service allows it), page 4 refused.
        ("auto", "2"),
        ("cursor", "250"),
        ("pages", "250"),
    ],
)
def test_with_the_session_every_comment_while_keys_rotate(
    tmp_path: Path, redis_url: str, paging: str, depth: str
) -> None:
    corpus = _corpus()
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_TARGET_ROOT_PAGING=paging,
                  SCRAPER_TARGET_LEGACY_DEPTH=depth)  # fmt: skip
    common = ["--target", "video-list", "--redis-url", redis_url]
    out = tmp_path / "out"
    with served(corpus, SimulatorOptions(session=SESSION, latency_ms=30)) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        # The crawl starts with the keys it shared yesterday: they rotate before its first signed
        # request (so at least one -403 and one shared renewal, whatever the timing), and again
        # every 0.5 s while it runs.
        keys = orjson.loads(urllib.request.urlopen(f"{sim.url}/_sim/keys", timeout=5).read())
        stale = {"img_key": keys["img_key"], "sub_key": keys["sub_key"], "version": 1, "fetched_at": time.time()}
        redis.Redis.from_url(redis_url).hset(TargetKeys("video-list").wbi, mapping=stale)
        urllib.request.urlopen(urllib.request.Request(f"{sim.url}/_sim/rotate", method="POST"), timeout=5)
        with rotating_keys(sim, every_s=0.5) as rotations:
            logs = _work(env, common, out, "--log-level", "DEBUG")
        answers = sim.stats()["by_code"]
    assert len(rotations) >= 1
    exported = assert_exported_exactly(tmp_path, common, out, env, corpus.all_rpids())
    code, report, report_text = _report(env, common)
    assert code == 0, report
    statuses = {row["bvid"]: row["status"] for row in report["videos"]}
    assert statuses == {
        v.bvid: {"closed": "closed", "deleted": "deleted"}.get(v.state, "complete") for v in corpus.videos
    }
    # The ledger counted each comment once: pages the legacy pages and the cursor chain share
    # (auto) are not counted twice, which would hide a missing comment.
    fetched = {row["bvid"]: row["fetched"] for row in report["videos"]}
    assert fetched == {v.bvid: len(corpus.video_rpids(v)) for v in corpus.videos}
    assert answers.get("-403", 0) > 0, "the keys rotated during the crawl"
    stats = stats_json(redis_url, env)
    assert stats["dead"] == 0 and stats["retries_by_reason"].get("wbi_rejected", 0) > 0
    everything = logs + exported.stdout + exported.stderr + report_text + orjson.dumps(stats).decode()
    everything += run_cli(["dead", *common, "list"], env).stdout
    for shard in out.rglob("*"):
        if shard.is_file():
            everything += shard.read_text()
    assert SESSION not in everything


def test_without_the_session_the_report_names_login(tmp_path: Path, redis_url: str) -> None:
    corpus = _corpus()
    env = cli_env(tmp_path)
    common = ["--target", "video-list", "--redis-url", redis_url]
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        _work(env, common, tmp_path / "out")
        export = tmp_path / "all.jsonl"
        assert run_cli(["export", *common, "--output-dir", str(tmp_path / "out"), "--output", str(export)],
                       env).returncode == 0  # fmt: skip
    code, report, _ = _report(env, common)
    assert code == 3
    got: dict[int, set[int]] = {}
    for line in export.read_text().splitlines():
        record = orjson.loads(line)
        got.setdefault(record["oid"], set()).add(record["rpid"])
    rows = {row["oid"]: row for row in report["videos"]}
    for video in corpus.videos:
        row = rows[video.aid]
        if video.state in ("closed", "deleted"):
            assert row["status"] == video.state, row
        elif got.get(video.aid, set()) == corpus.video_rpids(video):  # all of it was visible without login
            assert row["status"] == "complete", row
        else:  # a word on every video that shows less than it has
            assert row["status"] == "incomplete", row
            assert str(row["reason"]).startswith("login required: "), row
    assert report["summary"]["incomplete"] >= 1


def test_legacy_paging_past_its_depth_is_never_complete(tmp_path: Path, redis_url: str) -> None:
    corpus = _corpus()
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_TARGET_ROOT_PAGING="legacy")
    common = ["--target", "video-list", "--redis-url", redis_url]
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        _work(env, common, tmp_path / "out")
    code, report, _ = _report(env, common)
    assert code == 3
    rows = {row["oid"]: row for row in report["videos"]}
    deep = [v for v in corpus.videos if v.state == "ok" and v.roots > LEGACY_CAP * 20]
    for video in deep:
        assert rows[video.aid]["status"] == "incomplete"
        assert "legacy paging depth reached" in str(rows[video.aid]["reason"])


def _seed_credential(redis_url: str, key: str, values: dict[str, str]) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(key, mapping={**values, "version": 1, "fetched_at": time.time()})
    client.close()


def test_stale_keys_cost_one_shared_refresh_across_two_processes(tmp_path: Path, redis_url: str) -> None:
    corpus = Corpus.generate(seed=12, videos=40, comments=3000)
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_TARGET_ROOT_PAGING="cursor")
    common = ["--target", "video-list", "--redis-url", redis_url]
    # Both processes start from keys the service no longer accepts: every first cursor page answers -403.
    _seed_credential(redis_url, KEYS.wbi, {"img_key": "0" * 32, "sub_key": "1" * 32})
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        _work(env, common, tmp_path / "out", "--batch-size", "4")
        nav_requests = endpoint_requests(sim, "/x/web-interface/nav")
        refused = sim.stats()["by_code"].get("-403", 0)
    assert refused >= 2
    assert nav_requests == 1
    stats = stats_json(redis_url, env)
    assert stats["dead"] == 0
    assert redis.Redis.from_url(redis_url).hget(KEYS.stats, "renewed:wbi") == b"1"
    assert_exported_exactly(tmp_path, common, tmp_path / "out", env, corpus.all_rpids())


def test_risk_control_renews_the_device_cookie_once(tmp_path: Path, redis_url: str) -> None:
    corpus = Corpus.generate(seed=13, videos=12, comments=1500)
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}", SCRAPER_TARGET_ROOT_PAGING="cursor")
    common = ["--target", "video-list", "--redis-url", redis_url]
    _seed_credential(redis_url, KEYS.device, {"buvid3": ""})  # a device cookie the service rejects: -352
    with served(corpus, SimulatorOptions(session=SESSION)) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        _work(env, common, tmp_path / "out")
        spi_requests = endpoint_requests(sim, "/x/frontend/finger/spi")
        risk = sim.stats()["by_code"].get("-352", 0)
    assert risk >= 1 and spi_requests == 1
    stats = stats_json(redis_url, env)
    assert stats["retries_by_reason"]["risk_check"] == risk
    assert stats["bans"] >= 1 and stats["dead"] == 0
    assert redis.Redis.from_url(redis_url).hget(KEYS.device, "buvid3") not in (None, b"")
    assert_exported_exactly(tmp_path, common, tmp_path / "out", env, corpus.all_rpids())


@pytest.mark.parametrize("session", [True])
def test_simulated_run_stays_in_its_own_namespace(tmp_path: Path, redis_url: str, session: bool) -> None:
    env = cli_env(tmp_path)
    videos = tmp_path / "v.txt"
    videos.write_text("BV17x411w7KC\nav2\n")
    out = tmp_path / "out"
    result = run_cli(
        ["run", "--target", "video-list", "--redis-url", redis_url, "--simulate", "always"]
        + ["--videos", str(videos), "--output-dir", str(out), "--processes", "1"],
        env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "SIMULATED DATA" in result.stderr and "session cookie" in result.stderr
    assert "2 videos: 2 complete" in result.stdout
    names = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*")]
    assert names and all(name.startswith("scraper-sim:") for name in names), names
    files = [p.relative_to(out).parts[0] for p in out.rglob("*") if p.is_file()]
    assert files and set(files) == {"simulated"}


def test_auto_paging_on_a_server_without_depth_stays_on_page_numbers(tmp_path: Path, redis_url: str) -> None:
    """A service that pages as deep as asked (the open profile): the probes past the
    assumed depth keep answering, so no video needs the cursor chain."""
    corpus = Corpus.generate(seed=15, videos=8, comments=6000)
    deepest = max(v.roots for v in corpus.videos if v.state == "ok")
    assert deepest > 5 * 20, "a video well past the assumed depth of 2 pages"
    env = cli_env(tmp_path, SCRAPER_TARGET_LEGACY_DEPTH="2")
    common = ["--target", "video-list", "--redis-url", redis_url]
    with served(corpus, SimulatorOptions(profile="legacy-open")) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        _work(env, common, tmp_path / "out")
        signed = endpoint_requests(sim, "/x/v2/reply/wbi/main")
        legacy = endpoint_requests(sim, "/x/v2/reply")
    assert signed == 0
    assert legacy == sum(corpus.main_pages(v) for v in corpus.videos)  # each page once, none past the end
    code, report, _ = _report(env, common)
    assert code == 0, report
    assert_exported_exactly(tmp_path, common, tmp_path / "out", env, corpus.all_rpids())


def test_auto_paging_when_comments_arrive_mid_crawl_loses_no_old_one(tmp_path: Path, redis_url: str) -> None:
    """New roots push every listed root one place down: a numbered page fetched after its
    neighbour can skip a root. The crawl must notice (page counts differ) and make sure."""
    corpus = Corpus.generate(seed=16, videos=4, comments=12000)
    deep = max((v for v in corpus.videos if v.state == "ok"), key=lambda v: v.roots)
    assert deep.roots > 60 * 20, "enough root pages to be fetched out of order"
    env = cli_env(tmp_path, SCRAPER_COOKIE=f"SESSDATA={SESSION}")
    common = ["--target", "video-list", "--redis-url", redis_url]
    out = tmp_path / "out"
    with served(corpus, SimulatorOptions(session=SESSION, latency_ms=150)) as sim:
        coordinate(env, common, write_video_list(corpus, tmp_path / "v.txt"), sim.url)
        before = corpus.all_rpids()
        pod = start_cli(["work", *common, "--processes", "2", "--concurrency", "16", "--rate-limit", "0", "--burst",
                         "--output-dir", str(out)], env)  # fmt: skip
        wait_for(lambda: stats_json(redis_url, env)["pages_done"] >= 40, timeout=60)
        for _ in range(3):  # comments keep arriving while the pages are fetched
            body = orjson.dumps({"videos": {str(deep.aid): {"roots": 7}}})
            grow = urllib.request.Request(f"{sim.url}/_sim/grow", data=body, method="POST")
            urllib.request.urlopen(grow, timeout=5).read()
            time.sleep(0.3)
        assert pod.wait(timeout=180) in (0, 3), pod.communicate()[1]
        after = corpus.all_rpids()
    export = tmp_path / "all.jsonl"
    assert run_cli(["export", *common, "--output-dir", str(out), "--output", str(export)], env).returncode == 0
    exported = {orjson.loads(line)["rpid"] for line in export.read_text().splitlines()}
    assert before <= exported, f"{len(before - exported)} comments that existed all along were skipped"
    assert exported <= after
    code, report, _ = _report(env, common)
    assert code == 0, report
