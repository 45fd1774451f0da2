"""What a long crawl costs: Redis bytes per page, commands per page, export memory.

    python benchmarks/scale.py            # 1,000,000 pages, then 1.25 M and 5 M comments exported
    python benchmarks/scale.py --quick    # 30,000 pages, 50 k and 200 k comments (~1 min)

Part 1 (Redis, no HTTP): a private redis-server on a free 127.0.0.1 port, in a
temporary folder, no persistence. The project's own ``TaskQueue`` runs a
synthetic crawl the way workers do: the coordinator enqueues each video's
page 1; consumers claim batches (XREADGROUP COUNT 32) and settle them in one
MULTI round trip each, announcing follow-ups as a worker would (page 1 fans
out the video's main pages, each main page one sub-reply thread of two pages,
and each main page re-announces the two pages after it, as the page window
does). When the queue is empty it reads, at rest: INFO memory (used_memory
before and after), MEMORY USAGE of every key, summed by name with numbers
as ``#`` (so each structure's share per page shows, e.g. the ``seen`` set or
per-video keys), INFO commandstats
(commands per page, by command) and the client's own count of round trips
(one per pipeline or command sent), and the settle throughput.

Part 2 (export): synthetic shards of N and 4N comments (~270 B a line, 5% of
them a second time with an older ``crawled_at``), each exported by
``scraper.export.export`` in a child process that reports its peak RSS
(VmHWM), its CPU time and its wall time.

Then it prints the tables and a projection to 10 M and 100 M pages from the
measured slopes (Redis bytes per page, export seconds per comment at 20
comments a page; the export's memory is flat). Bounded in time: every phase
stops at ``--timeout-s``; the server and the temporary files are removed on
exit, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(REPO), str(BENCH_DIR / "modes")]

import redis.asyncio as aioredis  # noqa: E402
from _procs import PrivateRedis  # noqa: E402
from redis.asyncio.connection import AbstractConnection  # noqa: E402

from scraper.keys import TargetKeys  # noqa: E402
from scraper.queue import SettleBatch, TaskQueue  # noqa: E402
from scraper.settle import LedgerDelta, Outcome  # noqa: E402
from scraper.tasks import MAIN, REPLY, Task  # noqa: E402

MAIN_PAGES = 25  # a video: a chain of 25 main pages, each with a two-page sub-reply thread -> 75 pages
PAGES_PER_VIDEO = MAIN_PAGES * 3
COMMENTS_PER_PAGE = 20
CONSUMERS = 8
_INDEX_BYTES_PER_LINE = 32  # what the export's temporary index holds per line (see scraper/export.py)
BATCH = 32


# ---- part 1: Redis ----------------------------------------------------------


class RoundTrips:
    """Counts what the client sends: one packed write per command or pipeline."""

    count = 0

    @classmethod
    def install(cls) -> None:
        original = AbstractConnection.send_packed_command

        async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
            cls.count += 1
            await original(self, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def _followups(task: Task) -> list[Task]:
    """A video is a chain of main pages (as cursor pages are), each announcing a two-page thread.

    Each page names only pages nobody else names: with settles applied at most
    once per entry, follow-ups need no dedup set (issue 13)."""
    if task.kind == MAIN:
        thread = Task(kind=REPLY, oid=task.oid, root=task.oid * 1000 + task.page, page=1)
        chain = [Task(kind=MAIN, oid=task.oid, page=task.page + 1)] if task.page < MAIN_PAGES else []
        return [*chain, thread]
    if task.page == 1:
        return [Task(kind=REPLY, oid=task.oid, root=task.root, page=2)]
    return []


def _outcome(entry_id: bytes, task: Task) -> Outcome:
    """What a worker would settle for this page: its follow-ups, comments and ledger delta."""
    if task.kind == MAIN and task.page == MAIN_PAGES and task.oid % 100 == 0:
        outcome = Outcome(entry_id, task, final={"task": task.encode().decode(), "kind": "closed"})
        outcome.counters.update({"final:closed": 1, "pages_final": 1})
        return outcome
    delta = LedgerDelta()
    if task.kind == MAIN:
        delta.threads = [(task.oid * 1000 + task.page, 2 * COMMENTS_PER_PAGE, 2)]
        if task.page == 1:
            delta.expected = PAGES_PER_VIDEO * COMMENTS_PER_PAGE
    outcome = Outcome(entry_id, task, _followups(task), COMMENTS_PER_PAGE, ledger=delta)
    outcome.counters.update(pages_done=1, comments=COMMENTS_PER_PAGE)
    return outcome


async def _consume(queue: TaskQueue, deadline: float, done: list[int]) -> None:
    idle = 0
    while time.monotonic() < deadline:
        entries = await queue.claim(BATCH, block_ms=50)
        if not entries:
            idle += 1
            if idle >= 3:  # 150 ms of nothing: the crawl is over (follow-ups land with the settle)
                return
            continue
        idle = 0
        await queue.settle(SettleBatch([_outcome(entry_id, task) for entry_id, task in entries]))
        done[0] += len(entries)


_SPLIT = ("dataset.bytes", "overhead.total", "clients.normal", "lua.caches", "keys.count")


async def weigh_keys(client: aioredis.Redis) -> dict[str, int]:
    """MEMORY USAGE of every key in Redis, summed by name with numbers as ``#``
    (so per-video or per-thread keys show as one line, e.g. ``scraper:{T}:v:#``)."""
    groups: dict[str, int] = {}
    names = [key async for key in client.scan_iter(count=1000)]
    for start in range(0, len(names), 1000):
        pipe = client.pipeline(transaction=False)
        for key in names[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(names[start : start + 1000], await pipe.execute()):
            group = re.sub(r"\d+", "#", key.decode())
            groups[group] = groups.get(group, 0) + int(size or 0)
    return groups


def _commandstats(info: dict[str, Any]) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in info.items()}


@dataclass
class RedisFigures:
    pages: int
    seconds: float
    used_before: int
    used_after: int
    per_key: dict[str, int]
    commands: dict[str, int]
    round_trips: int
    complete: bool
    split: dict[str, int] = field(default_factory=dict)  # MEMORY STATS deltas


async def crawl(url: str, pages: int, timeout_s: float) -> RedisFigures:
    client = aioredis.Redis.from_url(url, max_connections=CONSUMERS + 2)
    keys = TargetKeys("scale")
    videos = max(pages // PAGES_PER_VIDEO, 1)
    await client.memory_purge()
    used_before = int((await client.info("memory"))["used_memory"])
    split_before = await client.memory_stats()
    stats_before = _commandstats(await client.info("commandstats"))
    trips_before = RoundTrips.count
    start = time.monotonic()
    coordinator = TaskQueue(client, keys)
    await coordinator.ensure_group()
    seeds = [Task(kind=MAIN, oid=170_001 + v, page=1, bvid=f"BV{v:010d}") for v in range(videos)]
    for first in range(0, len(seeds), 500):
        await coordinator.seed([(task, task.bvid) for task in seeds[first : first + 500]])
    done = [0]
    deadline = start + timeout_s
    await asyncio.gather(*(_consume(TaskQueue(client, keys, f"bench-{n}"), deadline, done) for n in range(CONSUMERS)))
    seconds = time.monotonic() - start
    round_trips = RoundTrips.count - trips_before
    commands = {
        name: calls - stats_before.get(name, 0)
        for name, calls in _commandstats(await client.info("commandstats")).items()
        if calls > stats_before.get(name, 0)
    }
    closed = sum(1 for task in seeds if task.oid % 100 == 0)  # their last page is final: no thread
    complete = await coordinator.is_drained() and done[0] == videos * PAGES_PER_VIDEO - 2 * closed
    await client.memory_purge()
    used_after = int((await client.info("memory"))["used_memory"])
    split_after = await client.memory_stats()
    split = {name: int(split_after[name]) - int(split_before[name]) for name in _SPLIT}
    per_key = await weigh_keys(client)
    await client.aclose()
    return RedisFigures(done[0], seconds, used_before, used_after, per_key, commands, round_trips, complete, split)


# ---- part 2: export ---------------------------------------------------------

_LINE = (
    b'{"rpid":%d,"oid":%d,"bvid":"BV17x411w7KC","root":0,"parent":0,"mid":%d,"uname":"user%d","level":%d,'
    b'"message":"%s","ctime":%d,"like":%d,"rcount":0,"crawled_at":%d}\n'
)
_WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


def write_shards(folder: Path, comments: int, shards: int = 4) -> int:
    """Synthetic output of ``comments`` comments; 5% appear twice (the second copy older)."""
    folder.mkdir(parents=True)
    rng = random.Random(comments)
    messages = [b" ".join(rng.choices(_WORDS, k=rng.randrange(6, 18))) for _ in range(997)]
    handles = [open(folder / f"pod-{n}.jsonl", "wb", buffering=1 << 20) for n in range(shards)]  # noqa: SIM115
    written = 0
    try:
        for index in range(comments):
            rpid = 10**11 + index * 13
            fields = (rpid, 170_001 + index // 20_000, index * 7919 % 10**9, index % 99_991, index % 7,
                      messages[index % 997], 1_700_000_000 + index, index % 50)  # fmt: skip
            line = _LINE % (*fields, 1_750_000_000_000 + index)
            handles[index % shards].write(line)
            written += len(line)
            if index % 20 == 0:  # a page fetched twice: an older copy in another shard
                older = _LINE % (*fields, 1_700_000_000_000 + index)
                handles[(index + 1) % shards].write(older)
                written += len(older)
    finally:
        for handle in handles:
            handle.close()
    return written


_CHILD = """
import re, resource, sys, time
from pathlib import Path
def hwm_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
from scraper.export import export
before = hwm_kb()
start = time.monotonic()
summary = export(Path(sys.argv[1]), "scale", Path(sys.argv[2]), memory_bytes=int(sys.argv[3]))
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(summary.comments, summary.partitions, before, hwm_kb(), wall, usage.ru_utime + usage.ru_stime)
"""


@dataclass
class ExportFigures:
    comments: int
    shard_bytes: int
    partitions: int
    rss_before_mb: float
    rss_peak_mb: float
    wall_s: float
    cpu_s: float


def measure_export(workdir: Path, comments: int, memory_mb: int, timeout_s: float) -> ExportFigures:
    out = workdir / f"out-{comments}"
    shard_bytes = write_shards(out / "scale", comments)
    destination = workdir / f"export-{comments}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out), str(destination), str(memory_mb << 20)],
        env=env, capture_output=True, text=True, timeout=timeout_s, check=True,
    )  # fmt: skip
    kept, partitions, before_kb, peak_kb, wall, cpu = result.stdout.split()
    if int(kept) != comments:
        raise SystemExit(f"export kept {kept} comments, expected {comments}")
    shutil.rmtree(out)
    destination.unlink()
    return ExportFigures(comments, shard_bytes, int(partitions), int(before_kb) / 1024, int(peak_kb) / 1024,
                         float(wall), float(cpu))  # fmt: skip


# ---- report -----------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
        for r in rows
    ]
    return "\n".join([line, rule, *body])


def report(redis_figures: RedisFigures, exports: list[ExportFigures], memory_mb: int) -> str:
    r = redis_figures
    pages = max(r.pages, 1)
    delta = r.used_after - r.used_before
    out = [
        f"## Redis: {r.pages:,} pages settled ({'complete' if r.complete else 'INCOMPLETE'}), "
        f"{CONSUMERS} consumers x batches of {BATCH}",
        "",
        table(
            ["figure", "value"],
            [
                ["used_memory delta at rest", f"{delta:,} B"],
                ["bytes per page (used_memory)", f"{delta / pages:.1f}"],
                ["settle throughput", f"{r.pages / r.seconds:,.0f} pages/s ({r.seconds:.1f} s)"],
                ["Redis commands per page", f"{sum(r.commands.values()) / pages:.2f}"],
                ["round trips per page", f"{r.round_trips / pages:.3f}"],
            ],
        ),
        "",
        table(
            ["key (MEMORY USAGE at rest; # = any number)", "bytes", "bytes per page"],
            [[k, f"{v:,}", f"{v / pages:.2f}"] for k, v in sorted(r.per_key.items(), key=lambda kv: -kv[1])],
        ),
        "",
        table(
            ["used_memory delta split (MEMORY STATS)", "bytes", "bytes per page"],
            [[k, f"{v:,}", f"{v / pages:.2f}"] for k, v in r.split.items()],
        ),
        "",
        table(
            ["command", "calls per page"],
            [[k, f"{v / pages:.3f}"] for k, v in sorted(r.commands.items(), key=lambda kv: -kv[1]) if k != "info"],
        ),
        "",
        f"## export (budget {memory_mb} MB, one child process each)",
        "",
        table(
            ["comments", "shards", "partitions", "peak RSS", "RSS before export", "wall", "CPU"],
            [
                [
                    f"{e.comments:,}",
                    f"{e.shard_bytes / 2**20:,.0f} MB",
                    str(e.partitions),
                    f"{e.rss_peak_mb:.1f} MB",
                    f"{e.rss_before_mb:.1f} MB",
                    f"{e.wall_s:.1f} s",
                    f"{e.cpu_s:.1f} s",
                ]
                for e in exports
            ],
        ),
    ]
    if len(exports) >= 2:
        first, last = exports[0], exports[-1]
        cpu_per_comment = (last.cpu_s - first.cpu_s) / (last.comments - first.comments)
        bytes_per_comment = last.shard_bytes / last.comments
    else:
        cpu_per_comment = exports[0].cpu_s / exports[0].comments
        bytes_per_comment = exports[0].shard_bytes / exports[0].comments
    peak = max(e.rss_peak_mb for e in exports)
    rows = []
    for projected in (10_000_000, 100_000_000):
        comments = projected * COMMENTS_PER_PAGE
        rows.append(
            [
                f"{projected:,}",
                f"{r.used_before / 2**20 + delta / pages * projected / 2**20:,.0f} MB",
                f"{projected / (r.pages / r.seconds) / 60:,.0f} min",
                f"{comments:,}",
                f"{comments * bytes_per_comment / 2**30:,.0f} GB",
                f"{comments * _INDEX_BYTES_PER_LINE * 1.05 / 2**30:,.1f} GB",
                f"{peak:.0f} MB",
                f"{comments * cpu_per_comment / 60:,.0f} min",
            ]
        )
    out += [
        "",
        f"## projection ({COMMENTS_PER_PAGE} comments a page; slopes from the runs above; settle time: "
        f"{CONSUMERS} consumers in one process; export temp disk: its index, {_INDEX_BYTES_PER_LINE} B a line)",
        "",
        table(
            [
                "pages",
                "Redis used_memory",
                "settle time",
                "comments",
                "shards",
                "export temp disk",
                "export RSS",
                "export CPU",
            ],  # fmt: skip
            rows,
        ),
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--comments", type=int, default=5_000_000, help="the larger export; the smaller is a quarter")
    parser.add_argument("--memory-mb", type=int, default=32, help="the export's budget")
    parser.add_argument("--quick", action="store_true", help="30,000 pages, 200,000 comments")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per phase")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.comments = 30_000, 200_000
    RoundTrips.install()
    workdir = Path(tempfile.mkdtemp(prefix="scraper-scale-"))
    server = PrivateRedis(workdir / "redis")
    try:
        figures = RedisFigures(0, 1.0, 0, 0, {}, {}, 0, False)
        if not args.skip_redis:
            server.start()
            print(f"crawl: {args.pages:,} pages against {server.url} ...", file=sys.stderr, flush=True)
            figures = asyncio.run(crawl(server.url, args.pages, args.timeout_s))
            server.stop()
        exports = []
        if not args.skip_export:
            for comments in (args.comments // 4, args.comments):
                print(f"export: {comments:,} comments ...", file=sys.stderr, flush=True)
                exports.append(measure_export(workdir, comments, args.memory_mb, args.timeout_s))
        print(report(figures, exports or [ExportFigures(1, 0, 1, 0, 0, 0, 0)], args.memory_mb))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
