"""Object-storage sink against the local-disk sink, on the seed-size job.

    .venv/bin/python benchmarks/s3_sink.py                       # 200 videos, 333,000 comments (~16.6k pages), 50 ms
    .venv/bin/python benchmarks/s3_sink.py --latency-ms 0 --rounds 1
    .venv/bin/python benchmarks/s3_sink.py --videos 40 --comments 60000   # ~3,000 pages: a quick look

Each round runs, for each sink in turn (alternating the order), a fresh
private redis-server, ``scraper coordinate``, ``scraper work --burst
--processes 2 --concurrency 128 --rate-limit 0`` with ``--output-dir DIR`` or
``--output-dir s3://BUCKET/run-N`` (moto's server on 127.0.0.1 in its own
process: a real store's CPU is not on this box, moto's is, and it is shown
apart), then ``scraper export`` checked exact against the corpus.

Segments are cut by size, age, the short hold of finished pages
(``s3.hold_s``) or an idle worker: the crawl's objects are counted.
Then the upload's own CPU: this process uploads the exported lines through
``S3SegmentSink`` in 20-comment pages and segments of the crawl's mean size, and the CPU of the
commits alone (signing, HTTP, MD5 in its thread; ``time.process_time``) is
divided by the pages. Writes ``results/s3_sink.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# This checkout's code, whatever the venv's editable install points at (before
# _harness, which imports the scraper package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h  # noqa: E402
import orjson
import psutil
from _procs import PrivateRedis, free_port, run_measured, scraper_command

from scraper.objectstore import BucketUrl, S3Options, blocking_client
from scraper.simulator.corpus import Corpus
from scraper.sinks_s3 import S3SegmentSink

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Moto:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(workdir / "moto.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()  # noqa: S310 - 127.0.0.1
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        self.handle = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        times = self.handle.cpu_times()
        return times.user + times.system

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def crawl(
    sink: str, job: h.Job, sim: h.Simulator, moto: Moto, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    redis = PrivateRedis(workdir / f"redis-{sink}").start()
    env = {**os.environ, **CREDENTIALS, "SCRAPER_WORKER_HEARTBEAT_DIR": str(workdir / "heartbeat")}
    env["SCRAPER_CONFIG_DIR"] = str(h.REPO / "config")
    env["PYTHONPATH"] = str(h.REPO)  # this checkout's code, whatever the venv's editable install points at
    env["SCRAPER_S3_ENDPOINT_URL"] = moto.url
    output = str(workdir / f"out-{sink}")
    if sink == "s3":
        bucket = f"bench-{int(time.time() * 1000)}"
        blocking_client(S3Options(endpoint_url=moto.url, region="us-east-1")).create_bucket(Bucket=bucket)
        output = f"s3://{bucket}/run"
    common = ["--target", "video-list", "--redis-url", redis.url, "--log-level", "WARNING"]
    cli = scraper_command()
    try:
        coordinate = [*cli, "coordinate", *common, "--videos", str(job.workdir / "videos.txt"), "--base-url", sim.url]
        subprocess.run(coordinate, env=env, check=True, capture_output=True, cwd=workdir)
        moto_before = moto.cpu_s()
        work = [
            *cli, "work", *common, "--output-dir", output, "--processes", str(args.processes),
            "--concurrency", str(args.concurrency), "--burst", "--rate-limit", "0", "--base-url", sim.url,
        ]  # fmt: skip
        measured, log = run_measured(work, cwd=workdir, env=env, timeout_s=args.timeout)
        moto_cpu = moto.cpu_s() - moto_before
        if measured.returncode != 0:
            raise RuntimeError(f"work ({sink}) exited {measured.returncode}: {log[-2000:]}")
        export_file = workdir / f"export-{sink}.jsonl"
        export = [*cli, "export", *common, "--output-dir", output, "--output", str(export_file)]
        exported = subprocess.run(export, env=env, capture_output=True, text=True, check=False)
        if exported.returncode != 0:
            raise RuntimeError(f"export ({sink}): {exported.stderr}")
        check = h.check_output(export_file, job.expected)
        segments = segment_sizes(moto, output) if sink == "s3" else []
    finally:
        redis.stop()
    return {
        "segments": len(segments),
        "segment_kb": statistics.mean(segments) / 1024 if segments else 0.0,
        "sink": sink,
        "wall_s": measured.wall_s,
        "pages_per_s": job.pages / measured.wall_s,
        "cpu_ms_per_page": 1000 * measured.cpu_s / job.pages,
        "moto_cpu_ms_per_page": 1000 * moto_cpu / job.pages if sink == "s3" else 0.0,
        "exact": check.complete,
        "check": check.describe(),
        "export_file": export_file,
    }


def segment_sizes(moto: Moto, output: str) -> list[int]:
    """Sizes of the objects a crawl uploaded (segments are cut by size, age, the hold or idleness)."""
    location = BucketUrl.parse(output)
    client = blocking_client(S3Options(endpoint_url=moto.url, region="us-east-1"))
    sizes: list[int] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        sizes.extend(int(item["Size"]) for item in page.get("Contents", ()))
    return sizes


async def upload_cpu(export_file: Path, moto: Moto, segment_bytes: int) -> dict[str, float]:
    """CPU of the commits alone, per 20-comment page, in this process, in segments of the crawl's mean size."""
    records = [orjson.loads(line) for line in export_file.read_bytes().splitlines() if line]
    pages = [records[i : i + 20] for i in range(0, len(records), 20)]
    options = S3Options(endpoint_url=moto.url, region="us-east-1", segment_bytes=max(segment_bytes, 64 * 1024))
    bucket = f"upload-{int(time.time() * 1000)}"
    blocking_client(options).create_bucket(Bucket=bucket)
    sink = S3SegmentSink(BucketUrl.parse(f"s3://{bucket}/run"), "video-list", options, hold_s=3600)
    await sink.open()
    write_cpu = commit_cpu = 0.0
    for page in pages:
        started = time.process_time()
        sink.write(page)
        write_cpu += time.process_time() - started
        if sink.due():
            started = time.process_time()
            await sink.commit()
            commit_cpu += time.process_time() - started
    started = time.process_time()
    await sink.aclose()
    commit_cpu += time.process_time() - started
    return {
        "pages": len(pages),
        "segments": sink.stats.segments,
        "mb": sink.stats.bytes / 2**20,
        "write_us_per_page": 1e6 * write_cpu / len(pages),
        "upload_us_per_page": 1e6 * commit_cpu / len(pages),
        "upload_wall_s": sink.stats.upload_s,
    }


def main() -> int:
    os.environ.update(CREDENTIALS)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=333_000)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    info = h.machine_info()
    corpus = Corpus.generate(seed=args.seed, videos=args.videos, comments=args.comments)
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-s3-"))
    job = h.Job.build(corpus, workdir / "job")
    print(f"# s3 sink vs local sink: {job.pages:,} pages, {job.comments:,} comments; {h.machine_line(info)}")
    rows: dict[str, list[dict[str, Any]]] = {"local": [], "s3": []}
    moto = Moto(workdir)
    try:
        with h.Simulator(videos=args.videos, comments=args.comments, seed=args.seed, latency_ms=args.latency_ms) as sim:
            job.bind(sim.url)
            for round_ in range(args.rounds):
                for sink in ("local", "s3") if round_ % 2 == 0 else ("s3", "local"):
                    row = crawl(sink, job, sim, moto, workdir / f"r{round_}", args)
                    rows[sink].append(row)
                    print(
                        f"round {round_} {sink:5}: {row['pages_per_s']:7.0f} pages/s, {row['cpu_ms_per_page']:.3f} "
                        f"CPU ms/page (moto {row['moto_cpu_ms_per_page']:.3f}), {row['check']}",
                        flush=True,
                    )
        last = rows["s3"][-1]
        upload = asyncio.run(upload_cpu(last["export_file"], moto, int(last["segment_kb"] * 1024)))
    finally:
        moto.close()

    def med(sink: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[sink])

    local_cpu, s3_cpu = med("local", "cpu_ms_per_page"), med("s3", "cpu_ms_per_page")
    lines = [
        "# Object-storage sink vs local-disk sink",
        "",
        f"- job: {job.pages:,} pages, {job.comments:,} comments, simulator latency {args.latency_ms:g} ms; "
        f"`scraper work --processes {args.processes} --concurrency {args.concurrency} --burst --rate-limit 0`; "
        f"{args.rounds} rounds, medians; every export exact: {all(r['exact'] for rs in rows.values() for r in rs)}",
        f"- machine: {h.machine_line(info)}; the S3 store is moto's server on the same 2 cores",
        "",
        "| sink | pages/s | CPU ms/page (work tree) | store CPU ms/page (moto) |",
        "|---|---|---|---|",
        f"| local disk | {med('local', 'pages_per_s'):,.0f} | {local_cpu:.3f} | - |",
        f"| s3 ({med('s3', 'segments'):,.0f} segments of {med('s3', 'segment_kb'):,.0f} KiB) | "
        f"{med('s3', 'pages_per_s'):,.0f} | {s3_cpu:.3f} | {med('s3', 'moto_cpu_ms_per_page'):.3f} |",
        "",
        f"Upload alone ({upload['pages']:,} pages, {upload['segments']} segments, {upload['mb']:.1f} MiB, "
        f"this process): {upload['upload_us_per_page']:.1f} µs CPU per page for the commits "
        f"(serialising the lines: {upload['write_us_per_page']:.1f} µs/page, the same as the local sink), "
        f"{upload['upload_us_per_page'] / 1000 / s3_cpu:.1%} of the work tree's CPU per page with the s3 sink; "
        f"the crawl's extra CPU per page over the local sink: {s3_cpu - local_cpu:+.3f} ms.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (h.RESULTS_DIR / "s3_sink.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
