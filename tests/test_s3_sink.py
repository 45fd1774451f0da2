"""The object-storage sink and the export's bucket reader, against a real
S3-compatible server on 127.0.0.1 (moto's server mode, started here).

Why moto: MinIO, the most faithful server, ships no PyPI wheel or Debian
package, and downloads of its binary are not possible here; moto's server is
a real HTTP endpoint that takes SigV4-signed requests and implements
PutObject, GetObject streaming and ListObjectsV2 pagination, which is all
this sink and the export use. (It does not verify Content-MD5; AWS, GCS and
MinIO do, and the sink sends it.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from scraper.errors import UserError
from scraper.export_sources import BucketShards, open_source, split_lines
from scraper.keys import CONSUMER_GROUP, TargetKeys
from scraper.objectstore import BucketUrl, S3Options, blocking_client
from scraper.settle import Outcome
from scraper.simulator.corpus import Corpus
from scraper.sinks_s3 import S3SegmentSink, SinkUnavailable
from scraper.tasks import Task
from tests.conftest import free_port
from tests.helpers import (
    cli_env,
    coordinate,
    exported_rpids,
    run_cli,
    simulator,
    start_cli,
    stats_json,
    wait_for,
    worker_children,
)
from workers.settler import Settler
from workers.uploads import Uploads

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never probe an instance profile from a test
}


class S3Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, log_dir: Path) -> None:
        log = open(log_dir / "moto.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {log_dir / 'moto.log'}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(free_port())
    server.start(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3_options(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Options:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return S3Options(endpoint_url=s3_server.url, region="us-east-1", segment_bytes=64 * 1024)


_buckets = iter(range(10_000))


@pytest.fixture
def bucket(s3_options: S3Options) -> str:
    """A fresh, empty bucket per test."""
    name = f"out-{next(_buckets)}-{int(time.time() * 1000)}"
    blocking_client(s3_options).create_bucket(Bucket=name)
    return name


def page(number: int, size: int = 20) -> list[dict[str, Any]]:
    """A page of comments the size of the real ones (~400 bytes a comment)."""
    return [
        {"rpid": number * 100 + i, "oid": 7, "content": {"message": "x" * 350}, "page": number} for i in range(size)
    ]


def exported(source: BucketShards) -> tuple[list[int], int]:
    """What the export does with the lines: every rpid once, cut lines skipped."""
    rpids: list[int] = []
    cut = 0
    for name in source.names():
        for line in source.lines(name):
            if not line.endswith(b"\n"):
                cut += 1
                continue
            rpids.append(orjson.loads(line)["rpid"])
    return rpids, cut


async def open_sink(bucket: str, options: S3Options, **kwargs: Any) -> S3SegmentSink:
    sink = S3SegmentSink(BucketUrl.parse(f"s3://{bucket}/crawls/run1"), "video-list", options, **kwargs)
    await sink.open()
    return sink


async def test_segments_roll_by_size_and_commit_uploads_them_in_order(bucket: str, s3_options: S3Options) -> None:
    sink = await open_sink(bucket, s3_options, hold_s=3600)
    acknowledged: list[int] = []
    for number in range(1, 41):
        sink.write(page(number))
        pending = [number]
        if sink.due():  # 64 KB reached: upload, then the pages may be acknowledged
            await sink.commit()
            acknowledged += pending
    assert not sink.due() or sink.buffered_bytes >= s3_options.segment_bytes
    await sink.aclose()  # the tail segment

    source = BucketShards(BucketUrl.parse(f"s3://{bucket}/crawls/run1"), "video-list", s3_options)
    names = source.names()
    assert len(names) == sink.stats.segments >= 5
    assert all(name.startswith(f"crawls/run1/video-list/{sink.stem}-") for name in names)
    assert names == sorted(names) and names[0].endswith("-000000.jsonl")
    rpids, cut = exported(source)
    assert sorted(rpids) == sorted(rpid for n in range(1, 41) for rpid in (r["rpid"] for r in page(n)))
    assert cut == 0 and len(rpids) == len(set(rpids)) == 800
    assert sink.stats.lines == 800 and sink.buffered_bytes == 0


async def test_due_by_age_and_when_idle(bucket: str, s3_options: S3Options) -> None:
    sink = await open_sink(bucket, s3_options, hold_s=0.2)
    assert not sink.due(idle=True)  # nothing written: nothing to upload
    sink.write(page(1))
    assert not sink.due()
    assert sink.due(idle=True)
    await asyncio.sleep(0.25)
    assert sink.due()
    await sink.aclose()
    assert sink.stats.segments == 1


async def test_killed_worker_and_failed_upload_lose_nothing_and_double_nothing(
    bucket: str, s3_options: S3Options
) -> None:
    """A worker killed mid-segment; another killed between upload and acknowledgement;
    an upload refused by the store. A queue of page numbers plays Redis: a page
    leaves it only when acknowledged, i.e. after commit() returned."""
    location = f"s3://{bucket}/crawls/run1"
    queue = list(range(1, 61))

    # Worker A: pages 1-20 committed and acknowledged; 21-30 written, then kill -9
    # (the open segment dies with the process, nothing of it reaches the bucket).
    a = await open_sink(bucket, s3_options, hold_s=3600, stem="pod-a-1")
    for number in range(1, 21):
        a.write(page(number))
    await a.commit()
    queue = [n for n in queue if n > 20]
    for number in range(21, 31):
        a.write(page(number))
    del a  # killed: no aclose()

    # Worker B: pages 21-40 uploaded, killed before the acknowledgement reached Redis.
    b = await open_sink(bucket, s3_options, hold_s=3600, stem="pod-b-1")
    for number in range(21, 41):
        b.write(page(number))
    await b.commit()
    del b

    # Worker C: the store refuses the upload (its bucket is gone); the segment
    # stays sealed and nothing is acknowledged; once the store is back the same
    # segment goes up under the same key, before any later line.
    missing = f"{bucket}-later"
    c = S3SegmentSink(BucketUrl.parse(f"s3://{missing}/crawls/run1"), "video-list", s3_options, stem="pod-c-1")
    await c.open()
    for number in queue:
        c.write(page(number))
    with pytest.raises(SinkUnavailable, match="upload failed"):
        await c.commit()
    assert c.due() and c.buffered_bytes > 0 and c.stats.failures == 1
    blocking_client(s3_options).create_bucket(Bucket=missing)
    c.write(page(61))  # a later page lands in a later segment
    await c.commit()
    await c.aclose()
    assert c.stats.segments == 2 and c.buffered_bytes == 0

    first = BucketShards(BucketUrl.parse(location), "video-list", s3_options)
    second = BucketShards(BucketUrl.parse(f"s3://{missing}/crawls/run1"), "video-list", s3_options)
    rpids_a, cut_a = exported(first)
    rpids_c, cut_c = exported(second)
    everything = rpids_a + rpids_c
    expected = {r["rpid"] for n in range(1, 62) for r in page(n)}
    assert set(everything) == expected  # nothing lost
    assert cut_a == cut_c == 0  # no partial object ever appears
    doubled = {rpid for rpid in everything if everything.count(rpid) > 1}
    assert doubled == {r["rpid"] for n in range(21, 41) for r in page(n)}  # only what B uploaded unacknowledged
    assert [name.rsplit("-", 1)[1] for name in second.names()] == ["000000.jsonl", "000001.jsonl"]


def bare_settler(sink: S3SegmentSink) -> Settler:
    """Only the settler's bookkeeping (held, pending, waiting) is used here: no Redis."""
    none: Any = None
    return Settler(queue=none, sink=sink, guard=none, telemetry=none, interval_s=1.0, on_settled=lambda: None)


def finished(settler: Settler, sink: S3SegmentSink, number: int) -> Outcome:
    """A fetched page: claimed (held), its lines written, its outcome carrying a follow-up."""
    task = Task(kind="main", oid=7, page=number)
    entry_id = f"1-{number}".encode()
    settler.held[entry_id] = task
    sink.write(page(number))
    return Outcome(entry_id, task, followups=[Task(kind="main", oid=7, page=number + 1)], records=20)


async def test_held_outcomes_settle_only_after_their_upload(bucket: str, s3_options: S3Options) -> None:
    """The whole outcome (acknowledgement AND follow-ups) waits for the upload; a failed
    upload keeps it waiting, in order; it stays held (capacity, lease refresh) throughout."""
    idle = False
    missing = f"{bucket}-later"
    sink = await open_sink(missing, s3_options, hold_s=3600)
    settler = bare_settler(sink)
    uploads = Uploads(name="t", settler=settler, sink=sink, idle=lambda: idle)
    first = finished(settler, sink, 1)
    uploads.hold(first)
    assert not uploads.due() and not settler.pending  # not full, not old, not idle
    assert settler.in_batches() == {b"1-1"} and settler.unsettled == 1  # a drain does not hand it back
    idle = True
    assert uploads.due()
    with pytest.raises(SinkUnavailable):  # the bucket does not exist yet
        await uploads.commit()
    second = finished(settler, sink, 2)
    uploads.hold(second)
    assert settler.waiting == [first, second] and not settler.pending and settler.unsettled == 2
    blocking_client(s3_options).create_bucket(Bucket=missing)
    await uploads.commit()
    assert settler.pending.outcomes == [first, second] and not settler.waiting
    assert settler.pending.outcomes[0].followups  # the follow-ups go with the acknowledgement
    assert sink.stats.lines == 40 and settler.unsettled == 2  # held until the settle is confirmed
    await sink.aclose()


async def test_a_waiting_outcome_makes_the_upload_due_after_the_hold(bucket: str, s3_options: S3Options) -> None:
    sink = await open_sink(bucket, s3_options, hold_s=0.2)
    settler = bare_settler(sink)
    uploads = Uploads(name="t", settler=settler, sink=sink, idle=lambda: False)
    uploads.hold(finished(settler, sink, 1))
    assert not uploads.due()
    await asyncio.sleep(0.25)
    assert uploads.due()  # a cursor chain must not wait for a full segment
    runner = asyncio.create_task(uploads.run())
    await asyncio.sleep(0.3)
    runner.cancel()
    assert len(settler.pending.outcomes) == 1 and sink.stats.segments == 1
    await sink.aclose()


def test_bucket_reader_streams_many_objects_and_keeps_cut_lines_visible(bucket: str, s3_options: S3Options) -> None:
    client = blocking_client(s3_options)
    for index in range(1005):  # past one ListObjectsV2 page (1000 keys)
        client.put_object(Bucket=bucket, Key=f"p/t/seg-{index:05d}.jsonl", Body=b'{"rpid":%d}\n' % index)
    client.put_object(Bucket=bucket, Key="p/t/cut.jsonl", Body=b'{"rpid":1}\n{"rpid":2')
    client.put_object(Bucket=bucket, Key="p/t/notes.txt", Body=b"not a shard")
    client.put_object(Bucket=bucket, Key="p/other/seg.jsonl", Body=b'{"rpid":9}\n')  # another target
    source = open_source(f"s3://{bucket}/p/", "t", s3_options)
    assert source.describe() == f"s3://{bucket}/p/t/"
    names = source.names()
    assert len(names) == 1006 and "p/t/notes.txt" not in names
    assert list(source.lines("p/t/cut.jsonl")) == [b'{"rpid":1}\n', b'{"rpid":2']


def test_missing_bucket_or_prefix_is_one_clear_line(bucket: str, s3_options: S3Options) -> None:
    with pytest.raises(UserError, match="NoSuchBucket"):
        open_source("s3://no-such-bucket-here/p", "t", s3_options).names()
    with pytest.raises(UserError, match=f"s3://{bucket}/typo/t/: no output for target 't'"):
        open_source(f"s3://{bucket}/typo", "t", s3_options).names()


async def test_no_credentials_fails_at_start(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    sink = S3SegmentSink(BucketUrl.parse("s3://some-bucket/p"), "t", S3Options(endpoint_url=s3_server.url))
    with pytest.raises(UserError, match="s3://some-bucket/p: no credentials for the bucket"):
        await sink.open()


def test_split_lines_recuts_chunks() -> None:
    chunks = [b'{"a":1}\n{"b"', b":2}\n", b"", b'{"c":3}\n{"d"']
    assert list(split_lines(chunks)) == [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n', b'{"d"']
    assert list(split_lines([b"x\n"])) == [b"x\n"]


def test_bucket_urls_and_hold_limit() -> None:
    assert BucketUrl.parse("s3://my-bucket") == BucketUrl("my-bucket", "")
    assert BucketUrl.parse("s3://my-bucket/a/b/").segment_key("t", "h-1-2", 3) == "a/b/t/h-1-2-000003.jsonl"
    assert str(BucketUrl.parse("s3://my-bucket/a/b/")) == "s3://my-bucket/a/b"
    for bad in ("s3://", "s3://UPPER/x", "/tmp/out", "s3://a"):
        with pytest.raises(UserError):
            BucketUrl.parse(bad)
    # A held page must never look abandoned to the takeover (claim_idle_s).
    assert S3Options(segment_max_age_s=5).hold_limit_s(claim_idle_s=90) == 1  # hold_s: chains keep moving
    assert S3Options(segment_max_age_s=5, hold_s=30).hold_limit_s(claim_idle_s=90) == 5
    assert S3Options(segment_max_age_s=0.5).hold_limit_s(claim_idle_s=90) == 0.5
    assert S3Options(segment_max_age_s=5).hold_limit_s(claim_idle_s=2) == 0.5
    with pytest.raises(UserError):
        S3Options(addressing_style="sideways").validate()


# ---- the real commands, with the bucket as the output --------------------------------------------

SEED, VIDEOS, COMMENTS = 9, 16, 8000
SESSION = "test-session"  # the simulator accepts it as SESSDATA; the crawler sends it (issue 10)
WORK = ["--processes", "2", "--concurrency", "8", "--rate-limit", "0", "--claim-idle", "2", "--backoff-base", "0.1"]


def crawl_env(tmp_path: Path, s3_server: S3Server, bucket: str) -> dict[str, str]:
    """The output is selected by settings alone: an s3:// output dir and the endpoint."""
    return cli_env(
        tmp_path,
        SCRAPER_OUTPUT_DIR=f"s3://{bucket}/crawls/run1",
        SCRAPER_S3_ENDPOINT_URL=s3_server.url,
        SCRAPER_S3_SEGMENT_BYTES="262144",
        SCRAPER_COOKIE=f"SESSDATA={SESSION}",
        **CREDENTIALS,
    )


def export_from_bucket(tmp_path: Path, common: list[str], env: dict[str, str], expected: set[int]) -> str:
    export_file = tmp_path / "all.jsonl"
    # The flag, as a user would give it (the environment names the same bucket).
    location = ["--output-dir", env["SCRAPER_OUTPUT_DIR"]]
    exported_run = run_cli(["export", *common, *location, "--output", str(export_file)], env, cwd=tmp_path)
    assert exported_run.returncode == 0, exported_run.stderr
    rpids = exported_rpids(export_file)
    assert len(rpids) == len(set(rpids))
    assert set(rpids) == expected
    return exported_run.stdout


def uploader_pids(source: BucketShards) -> set[int]:
    """The worker processes that uploaded segments (``<host>-<pid>-<start ms>-<seq>.jsonl``)."""
    try:
        names = source.names()
    except UserError:  # nothing uploaded yet
        return set()
    return {int(name.rsplit("-", 3)[1]) for name in names}


def pending_pids(redis_url: str) -> set[int]:
    """Worker processes with pages delivered and not yet acknowledged (consumer ``<host>-<pid>-<n>``)."""
    client = redis.Redis.from_url(redis_url)
    try:
        consumers = client.xpending(TargetKeys("video-list", "scraper").tasks, CONSUMER_GROUP)["consumers"]
    finally:
        client.close()
    return {int(c["name"].decode().rsplit("-", 2)[1]) for c in consumers if int(c["pending"]) > 0}


def test_crawl_to_a_bucket_survives_a_killed_worker(
    tmp_path: Path, redis_url: str, s3_server: S3Server, s3_options: S3Options, bucket: str
) -> None:
    env = crawl_env(tmp_path, s3_server, bucket)
    source = BucketShards(BucketUrl.parse(f"s3://{bucket}/crawls/run1"), "video-list", s3_options)
    videos = tmp_path / "videos.txt"
    common = ["--target", "video-list", "--redis-url", redis_url]
    sim = [
        "--session",
        SESSION,
        "--seed",
        str(SEED),
        "--videos",
        str(VIDEOS),
        "--comments",
        str(COMMENTS),
        "--latency-ms",
        "50",
    ]
    with simulator(env, *sim, "--write-videos", str(videos)) as base_url:
        corpus = Corpus.generate(seed=SEED, videos=VIDEOS, comments=COMMENTS)
        coordinate(env, common, videos, base_url)
        pod = start_cli(["work", *common, *WORK, "--burst"], env, cwd=tmp_path)
        beats = tmp_path / "heartbeat"

        def holding_uploader() -> int | None:
            """A child that uploaded already and holds unacknowledged pages right now."""
            children = worker_children(pod.pid, beats)
            if len(children) < 2:
                return None
            uploaded = uploader_pids(source)
            holding = pending_pids(redis_url)
            return next((pid for pid in children if pid in uploaded and pid in holding), None)

        wait_for(lambda: holding_uploader() is not None, timeout=60)
        victim = holding_uploader()
        assert victim is not None
        os.kill(victim, signal.SIGKILL)  # its open segment and held acknowledgements die with it
        assert stats_json(redis_url, env)["pages_done"] > 0  # pages acknowledged after their uploads
        assert pod.wait(timeout=240) == 0, pod.communicate()[1]

    final = stats_json(redis_url, env)
    assert (final["queued"], final["in_flight"], final["delayed"], final["dead"]) == (0, 0, 0, 0)
    assert final["reclaimed"] > 0  # the killed child's unacknowledged pages were taken over
    assert victim in uploader_pids(source)
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "output").exists()  # nothing written locally
    summary = export_from_bucket(tmp_path, common, env, corpus.all_rpids())
    assert "0 partial lines skipped" in summary


def bucket_lines(source: BucketShards) -> int:
    try:
        rpids, cut = exported(source)
    except UserError:  # nothing uploaded yet
        return 0
    assert cut == 0  # an object is whole or absent
    return len(rpids)


def test_sigterm_uploads_the_last_segment_then_acknowledges(
    tmp_path: Path, redis_url: str, s3_server: S3Server, s3_options: S3Options, bucket: str
) -> None:
    """Every acknowledged comment is in the bucket, at every moment and after the drain."""
    env = crawl_env(tmp_path, s3_server, bucket)
    # Big, long-lived segments: uploads happen only when the worker is idle
    # (nothing in flight: chains wait for their settle) and at the drain.
    env.update(SCRAPER_S3_SEGMENT_MAX_AGE_S="30", SCRAPER_S3_HOLD_S="30", SCRAPER_S3_SEGMENT_BYTES=str(16 << 20))
    videos = tmp_path / "videos.txt"
    common = ["--target", "video-list", "--redis-url", redis_url]
    sim = ["--session", SESSION, "--seed", "3", "--videos", "8", "--comments", "4000", "--latency-ms", "200"]
    uploaded = BucketShards(BucketUrl.parse(f"s3://{bucket}/crawls/run1"), "video-list", s3_options)
    with simulator(env, *sim, "--write-videos", str(videos)) as base_url:
        corpus = Corpus.generate(seed=3, videos=8, comments=4000)
        coordinate(env, common, videos, base_url)
        work = ["--processes", "1", "--concurrency", "8", "--rate-limit", "0", "--drain-timeout", "5"]
        pod = start_cli(["work", *common, *work], env, cwd=tmp_path)
        wait_for(lambda: stats_json(redis_url, env)["in_flight"] >= 8, timeout=60)
        for _ in range(10):  # read the acknowledgements first: whatever they count must be uploaded by then
            acknowledged = stats_json(redis_url, env)["comments"]
            assert bucket_lines(uploaded) >= acknowledged
            time.sleep(0.1)
        pod.send_signal(signal.SIGTERM)
        assert pod.wait(timeout=30) == 0
        after = stats_json(redis_url, env)
        assert after["in_flight"] == 0 and after["comments"] > 0  # drained: uploaded, then acknowledged
        assert bucket_lines(uploaded) >= after["comments"]
        finish = run_cli(["work", *common, *work, "--burst"], env, timeout=300, cwd=tmp_path)
        assert finish.returncode == 0, finish.stderr
    export_from_bucket(tmp_path, common, env, corpus.all_rpids())
