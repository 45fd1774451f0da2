"""What run.py, scaling.py and work_vs_bare.py share: the simulator, jobs, modes, checks, reports.

Network: the simulator listens on 127.0.0.1 only, is started here and stopped
here; every mode is bounded in time (``timeout_s``) and in requests (a
watchdog kills a mode that sends more than ``3 x pages + 1000`` requests).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

BENCH_DIR = Path(__file__).resolve().parent
MODES_DIR = BENCH_DIR / "modes"
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent
sys.path[:0] = [str(MODES_DIR), str(BENCH_DIR)]

from _machine import CpuWindow, provenance  # noqa: E402
from _procs import become_subreaper, free_port, install_cleanup, run_measured  # noqa: E402, F401 - re-exported

install_cleanup()

from scraper.export import CSV_COLUMNS  # noqa: E402
from scraper.simulator.corpus import Corpus  # noqa: E402


@dataclass(frozen=True)
class Mode:
    script: str
    about: str
    args: tuple[str, ...] = ()  # fixed flags
    sized: str = ""  # how the --processes P / --concurrency C of the run reach it: "pc", "total", ""
    seed: bool = False  # one of the three modes of the seed's table


MODES: dict[str, Mode] = {
    "threads": Mode("threads.py", "requests, a Session per thread, ThreadPoolExecutor(64)", seed=True),
    "processes": Mode(
        "processes.py", "multiprocessing.Pool(32) + requests; each process writes its own shard", seed=True
    ),
    "coroutines": Mode(
        "coroutines.py",
        "asyncio loop + aiohttp, P x C workers on an asyncio.Queue",
        ("--loop", "asyncio"),
        "total",
        seed=True,
    ),
    "coroutines-uvloop": Mode("coroutines.py", "the same on uvloop", ("--loop", "uvloop"), "total"),
    "gevent": Mode("gevent_pool.py", "gevent monkey-patched requests, Pool(P x C) of queue workers", (), "total"),
    "aiomultiprocess": Mode(
        "aiomultiprocess_pool.py",
        "Pool(P, childconcurrency=C), `await pool.map` in waves, a session and a shard per child",
        (),
        "pc",
    ),
    "bare": Mode("bare.py", "oracle: P uvloop processes x C workers over the precomputed URLs, a shard each", (), "pc"),
    "scraper": Mode("scraper_cli.py", "this project: redis-server -> coordinate -> work -> export", (), "pc"),
    # Opt-in (--all or --modes): the one-command path, labelled variants, and the slow peers.
    "scraper-run": Mode(
        "scraper_cli.py",
        "this project, the README's one command: redis-server -> `scraper run`",
        ("--one-command", "1"),
        "pc",
    ),
    "processes-via-parent": Mode(
        "processes_via_parent.py", "VARIANT: the same Pool(32), every page's lines sent back through the parent"
    ),
    "aiomultiprocess-stream": Mode(
        "aiomultiprocess_stream.py",
        "ANTI-PATTERN: `async for` over Pool().map (a 5 ms poll per result), aiohttp.request per page",
    ),
    "scrapy": Mode("scrapy_spider.py", "Scrapy spider, CONCURRENT_REQUESTS = P x C, CrawlerProcess", (), "total"),
    "scrapy-redis": Mode("scrapy_redis_spider.py", "scrapy-redis RedisSpider + private redis-server", (), "total"),
}
DEFAULT_MODES = ["threads", "processes", "coroutines", "coroutines-uvloop", "aiomultiprocess", "bare", "scraper"]
OPTIONAL_MODES = ["scraper-run", "gevent", "processes-via-parent", "aiomultiprocess-stream", "scrapy", "scrapy-redis"]
ALL_MODES = DEFAULT_MODES + OPTIONAL_MODES
_SIZE_FLAG = {
    "coroutines.py": "--workers",
    "gevent_pool.py": "--size",
    "scrapy_spider.py": "--concurrency",
    "scrapy_redis_spider.py": "--concurrency",
}


def precompile() -> None:
    """Compile the checkout's bytecode, as an installed scraper (pip, the image) has it.

    Without it, a machine with ``PYTHONDONTWRITEBYTECODE=1`` compiles the
    project's sources in every command (~0.1 s of CPU a job, charged to the
    scraper and to the modes that import its simulator code alike).
    """
    import compileall  # noqa: PLC0415

    for folder in ("scraper", "workers", "benchmarks"):
        compileall.compile_dir(REPO / folder, quiet=1)


def mode_args(mode: str, processes: int, concurrency: int) -> list[str]:
    """The mode's flags for a run at P processes x C coroutines (the scraper's shape)."""
    spec = MODES[mode]
    args = list(spec.args)
    if spec.sized == "pc":
        per_process = "--workers" if spec.script == "bare.py" else "--concurrency"
        args += ["--processes", str(processes), per_process, str(concurrency)]
    elif spec.sized == "total":
        args += [_SIZE_FLAG[spec.script], str(processes * concurrency)]
    return args


def available_modes(names: list[str] | None = None) -> list[str]:
    """The modes whose libraries are installed (scrapy, gevent, requests are the bench extra)."""
    needs = {
        "threads": "requests",
        "processes": "requests",
        "processes-via-parent": "requests",
        "gevent": "gevent",
        "scrapy": "scrapy",
        "scrapy-redis": "scrapy_redis",
    }
    found = []
    for name in names or DEFAULT_MODES:
        module = needs.get(name)
        if module:
            try:
                __import__(module)
            except ImportError:
                continue
        found.append(name)
    return found


def code_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every subprocess runs this checkout's code, whatever the venv's editable install points at."""
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=f"{REPO}{os.pathsep}{path}" if path else str(REPO))
    env.update(extra or {})
    return env


# ---- the job: one corpus, its files, what a complete crawl returns ----------------


@dataclass
class Job:
    corpus: Corpus
    workdir: Path
    base_url: str = ""
    expected: set[int] = field(default_factory=set)
    pages: int = 0

    @classmethod
    def build(cls, corpus: Corpus, workdir: Path) -> Job:
        workdir.mkdir(parents=True, exist_ok=True)
        job = cls(corpus=corpus, workdir=workdir)
        job.expected = corpus.expected_rpids()
        job.pages = corpus.expected_pages()
        (workdir / "aids.txt").write_text("".join(f"{v.aid}\n" for v in corpus.videos))
        corpus.write_videos(workdir / "videos.txt")
        return job

    def bind(self, base_url: str) -> None:
        """The URL list depends on the simulator's port."""
        self.base_url = base_url
        (self.workdir / "urls.txt").write_text("\n".join(self.corpus.page_urls(base_url)) + "\n")

    @property
    def comments(self) -> int:
        return len(self.expected)


def sub_corpus(corpus: Corpus, videos: int) -> Corpus:
    """The first ``videos`` videos of a corpus: the same pages, served by the same simulator."""
    return Corpus(corpus.videos[:videos], seed=corpus.seed, page_size=corpus.page_size, max_page=corpus.max_page)


def videos_for_pages(corpus: Corpus, pages: int) -> int:
    """How many leading videos of ``corpus`` make at least ``pages`` pages."""
    for n in range(1, len(corpus.videos) + 1):
        if sub_corpus(corpus, n).expected_pages() >= pages:
            return n
    return len(corpus.videos)


# ---- the simulator, in its own process -----------------------------------------


class Simulator:
    """``scraper simulate`` on a free 127.0.0.1 port, in its own process (own CPU).

    The comparison runs on the open profile (no WBI, login or depth gates): the
    other modes are plain page-numbered crawlers, and the table compares how
    fast each fetches the same pages, not who can pass the service's gates."""

    def __init__(self, *, videos: int, comments: int, seed: int, latency_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "scraper.cli",
            "simulate",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--videos",
            str(videos),
            "--comments",
            str(comments),
            "--seed",
            str(seed),
            "--latency-ms",
            str(latency_ms),
            "--profile",
            "legacy-open",
            "--log-level",
            "WARNING",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Simulator:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=code_env()
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if b"listening on" in line or not line:
                break
        if b"listening on" not in line:
            self.close()
            raise RuntimeError(f"simulator did not start: {line.decode(errors='replace')}")
        self.handle = psutil.Process(self.proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=10) as response:  # noqa: S310 - our 127.0.0.1 server
            return json.loads(response.read())

    def requests(self) -> int:
        return int(self.stats()["requests"])

    def cpu_s(self) -> float:
        times = self.handle.cpu_times()
        return times.user + times.system


# ---- one mode, one run --------------------------------------------------------------


@dataclass
class Check:
    lines: int
    unique: int
    duplicates: int
    missing: int
    extra: int
    bad_lines: int

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.bad_lines == 0

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{self.missing} missing")
        if self.extra:
            parts.append(f"{self.extra} unexpected")
        if self.bad_lines:
            parts.append(f"{self.bad_lines} bad lines")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates")
        return ", ".join(parts) or "exact"


# What every mode writes per comment, in this order: the fields of ``scraper export``
# (its CSV columns, then crawled_at). A mode that writes less does less work per
# comment than the scraper: its line counts as bad, and its run is not exact.
FIELDS = (*CSV_COLUMNS, "crawled_at")


def check_output(path: Path, expected: set[int]) -> Check:
    """Compare an output file's rpids with the corpus's: exact set, duplicates counted,
    every line an object with ``FIELDS``."""
    seen: set[int] = set()
    lines = duplicates = bad = 0
    if path.is_file():
        with open(path, "rb") as handle:
            for line in handle:
                lines += 1
                try:
                    record = orjson.loads(line)
                    rpid = int(record["rpid"])
                    if tuple(record) != FIELDS:
                        raise ValueError("not the export's fields")
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    bad += 1
                    continue
                if rpid in seen:
                    duplicates += 1
                else:
                    seen.add(rpid)
    return Check(
        lines=lines,
        unique=len(seen),
        duplicates=duplicates,
        missing=len(expected - seen),
        extra=len(seen - expected),
        bad_lines=bad,
    )


def _parse_result(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("RESULT "):
            try:
                return json.loads(line[7:])
            except ValueError:
                break
    return {}


def run_mode(
    mode: str,
    job: Job,
    sim: Simulator,
    *,
    timeout_s: float = 900.0,
    extra_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    keep_output: bool = False,
) -> dict[str, Any]:
    """Run one mode against the simulator; measure it; check its output; return one row.

    ``wall_s`` (end to end) is the mode's whole run, from its process start
    to its one output file written (for `scraper`: redis-server start,
    coordinate, work, export); ``fetch_s`` is the fetching interval the mode
    reports (after its imports, until the last page is written; for
    `scraper`: the `work` step, its interpreter and children included).
    """
    script = MODES_DIR / MODES[mode].script
    out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-", dir=job.workdir))
    output = out_dir / "comments.jsonl"
    cmd = [
        sys.executable,
        str(script),
        "--base-url",
        job.base_url,
        "--aids",
        str(job.workdir / "aids.txt"),
        "--urls",
        str(job.workdir / "urls.txt"),
        "--videos",
        str(job.workdir / "videos.txt"),
        "--output",
        str(output),
        *(extra_args or []),
    ]
    requests_before = sim.requests()
    sim_cpu_before = sim.cpu_s()
    limit = 3 * job.pages + 1000

    def watchdog() -> str | None:
        try:
            sent = sim.requests() - requests_before
        except OSError:
            return None
        return f"{sent} requests to the simulator (limit {limit})" if sent > limit else None

    log_path = (log_dir / f"{mode}.log") if log_dir else None
    load_before = os.getloadavg()[0]
    window = CpuWindow().start()
    epoch_start = time.time()
    measured, text = run_measured(
        cmd, cwd=out_dir, env=code_env(extra_env), timeout_s=timeout_s, log_path=log_path, watchdog=watchdog
    )
    epoch_end = time.time()
    machine = {**window.stop(), "load_start": round(load_before, 2), "load_end": round(os.getloadavg()[0], 2)}
    sim_cpu = sim.cpu_s() - sim_cpu_before
    stats = sim.stats()
    sent = int(stats["requests"]) - requests_before
    steady = steady_rate(stats.get("per_second") or {}, epoch_start, epoch_end)
    result = _parse_result(text)
    check = check_output(output, job.expected)
    if not keep_output:
        shutil.rmtree(out_dir, ignore_errors=True)
    ok = measured.returncode == 0 and check.complete and not measured.timed_out
    fetch_s = float(result.get("fetch_s") or result.get("crawl_s") or measured.wall_s)
    steps = result.get("steps") or {}
    wrapper_cpu_s = wrapper_wall_s = None
    if mode.startswith("scraper") and steps.get("work"):
        # The benchmark's own `scraper stats` call after the export is not the mode's (wall and CPU).
        fetch_s = float(steps["work"]["wall_s"])
        stats_step = steps.get("stats") or {}
        measured.wall_s -= float(stats_step.get("wall_s") or 0)
        # CPU: the user's commands and their Redis, not the wrapper that runs and samples them
        # (an interpreter and a process sampler: 0.2-0.3 s a job that a user's shell does not spend).
        scraper_cpu = sum(float((steps.get(name) or {}).get("cpu_s") or 0) for name in ("coordinate", "work", "export"))
        scraper_cpu += float((steps.get("redis") or {}).get("cpu_s") or 0)
        wrapper_cpu_s = round(measured.cpu_s - float(stats_step.get("cpu_s") or 0) - scraper_cpu, 3)
        measured.cpu_s = scraper_cpu
        if result.get("e2e_s"):
            # Wall: from the wrapper's start (its own interpreter and imports done) to the output
            # file: Redis's start and the commands, what a user waits for; not the wrapper's start-up.
            wrapper_wall_s = round(measured.wall_s - float(result["e2e_s"]), 3)
            measured.wall_s = float(result["e2e_s"])
    row: dict[str, Any] = {
        "mode": mode,
        "status": "ok" if ok else "FAILED",
        "check": check.describe(),
        "pages": job.pages,
        "comments": job.comments,
        "requests": sent,
        "wall_s": round(measured.wall_s, 3),
        "fetch_s": round(fetch_s, 3),
        "cpu_s": round(measured.cpu_s, 3),
        "cpu_ms_per_page": round(measured.cpu_s * 1000 / max(job.pages, 1), 3),
        **({"wrapper_cpu_s": wrapper_cpu_s} if wrapper_cpu_s is not None else {}),
        **({"wrapper_wall_s": wrapper_wall_s} if wrapper_wall_s is not None else {}),
        "max_proc_rss_mb": round(measured.max_proc_rss_mb, 1),
        "tree_rss_mb": round(measured.tree_rss_mb, 1),
        "tree_pss_mb": round(measured.tree_pss_mb, 1),
        "server_cpu_ms_per_page": round(sim_cpu * 1000 / max(sent, 1), 3),
        "steady_pages_per_s": steady,
        "machine": machine,
        "result": result,
    }
    if ok:
        row["pages_per_s"] = round(job.pages / measured.wall_s, 1)  # end to end
        row["fetch_pages_per_s"] = round(job.pages / fetch_s, 1)
    else:
        reason = "timed out / killed" if measured.timed_out else f"exit {measured.returncode}"
        tail = " | ".join(line for line in text.strip().splitlines()[-3:])[:300]
        row["failure"] = f"{reason}; output {check.describe()}; {tail}"
    if mode.startswith("scraper"):
        work = steps.get("work") or {}
        row["worker_child_max_rss_mb"] = work.get("worker_child_max_rss_mb")
        row["worker_child_max_pss_mb"] = work.get("worker_child_max_pss_mb")
        row["work_cpu_ms_per_page"] = round(float(work.get("cpu_s") or 0) * 1000 / max(job.pages, 1), 3)
        row["redis_cpu_ms_per_page"] = round(
            float((steps.get("redis") or {}).get("cpu_s") or 0) * 1000 / max(job.pages, 1), 3
        )
    # The crawl alone: the scraper's `work` step and its Redis (not coordinate or export);
    # any other mode's whole run (its crawl, and a join of its shards at most).
    row["crawl_cpu_ms_per_page"] = (
        round(row["work_cpu_ms_per_page"] + row["redis_cpu_ms_per_page"], 3)
        if mode.startswith("scraper") and steps.get("work")
        else row["cpu_ms_per_page"]
    )
    return row


def steady_rate(per_second: dict[str, int], start: float, end: float) -> float | None:
    """Median requests/s the simulator saw in the run's busy seconds.

    The first and last second of the run are left out, and so are seconds
    with no request at all (a mode still importing, or the scraper's
    coordinate step): the rate the crawl holds once it runs. None when the run
    has no such second.
    """
    counts = [n for second, n in per_second.items() if int(start) + 1 <= int(second) <= int(end) - 1 and n > 0]
    return round(statistics.median(counts), 1) if counts else None


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a mode's runs: min / median / max of the times, the median run's other figures.

    Every run must be ok, else the first failure is the row (a mode that
    fails once is not reported with a time).
    """
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        row = dict(failed[0])
        row["runs"] = len(rows)
        row["failed_runs"] = len(failed)
        return row
    ordered = sorted(rows, key=lambda r: r["wall_s"])
    row = dict(ordered[len(ordered) // 2])
    row["runs"] = len(rows)
    row["wall"] = spread([r["wall_s"] for r in rows])
    row["fetch"] = spread([r["fetch_s"] for r in rows])
    row["cpu_ms_per_page"] = round(statistics.median(r["cpu_ms_per_page"] for r in rows), 3)
    row["server_cpu_ms_per_page"] = round(statistics.median(r["server_cpu_ms_per_page"] for r in rows), 3)
    if all("crawl_cpu_ms_per_page" in r for r in rows):
        row["crawl_cpu_ms_per_page"] = round(statistics.median(r["crawl_cpu_ms_per_page"] for r in rows), 3)
    row["pages_per_s"] = round(row["pages"] / row["wall"]["median"], 1)
    row["fetch_pages_per_s"] = round(row["pages"] / row["fetch"]["median"], 1)
    row["machine_runs"] = [r["machine"] for r in rows]
    return row


# ---- the machine, the table, the files ---------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in (
        "aiohttp",
        "uvloop",
        "orjson",
        "aiomultiprocess",
        "redis",
        "requests",
        "gevent",
        "scrapy",
        "scrapy-redis",
    ):
        try:
            from importlib.metadata import version  # noqa: PLC0415

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - not installed
            continue
    redis_version = ""
    try:
        from _procs import redis_binary  # noqa: PLC0415

        text = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"v=(\S+)", text)
        redis_version = match.group(1) if match else text.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "redis_server": redis_version,
        "versions": versions,
        "git": _git_head(),
        **provenance(),
    }


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_line(info: dict[str, Any]) -> str:
    dirty = " + UNCOMMITTED CHANGES (--force)" if info.get("dirty") else ""
    return (
        f"{info['date']}; {info['nproc']} cores ({info['cpu_model']}); Python {info['python']}; "
        f"load average at start {info['loadavg_at_start']}; commit {info['git']}{dirty}"
    )


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
