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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import psutil

BENCH_DIR = Path(__file__).resolve().parent
MODES_DIR = BENCH_DIR / "modes"
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent
sys.path.insert(0, str(MODES_DIR))

from _procs import free_port, install_cleanup, run_measured  # noqa: E402

install_cleanup()

from scraper.simulator.corpus import Corpus  # noqa: E402

# mode name -> (script, one-line description)
MODES: dict[str, tuple[str, str]] = {
    "threads": ("threads.py", "requests, Session per thread, ThreadPoolExecutor(64)"),
    "processes": ("processes.py", "multiprocessing.Pool(32) + requests, results via the parent"),
    "coroutines": ("coroutines.py", "asyncio + aiohttp, 256 workers on an asyncio.Queue, TCPConnector(limit=256)"),
    "gevent": ("gevent_pool.py", "gevent monkey-patched requests, Pool(256) of queue workers"),
    "aiomultiprocess-map": ("aiomultiprocess_map.py", "aiomultiprocess.Pool().map(fetch_page, urls), precomputed URLs"),
    "scrapy": ("scrapy_spider.py", "Scrapy spider, CONCURRENT_REQUESTS=256, CrawlerProcess"),
    "scrapy-redis": ("scrapy_redis_spider.py", "scrapy-redis RedisSpider + private redis-server, 256 concurrent"),
    "bare": ("bare.py", "one uvloop process, 256 workers over the precomputed URL list, orjson (upper bound)"),
    "scraper": ("scraper_cli.py", "this project: redis-server -> coordinate -> work -> export"),
}
DEFAULT_MODES = [
    "threads", "processes", "coroutines", "gevent", "aiomultiprocess-map", "scrapy", "scrapy-redis", "bare", "scraper",
]


def available_modes() -> list[str]:
    names = [m for m in DEFAULT_MODES if (MODES_DIR / MODES[m][0]).is_file()]
    if "scrapy-redis" in names:
        try:
            import scrapy_redis  # noqa: F401, PLC0415
        except ImportError:
            names.remove("scrapy-redis")
    return names


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
    """``scraper simulate`` on a free 127.0.0.1 port, in its own process (own CPU)."""

    def __init__(self, *, videos: int, comments: int, seed: int, latency_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "scraper.cli", "simulate", "--host", "127.0.0.1", "--port", str(self.port),
            "--videos", str(videos), "--comments", str(comments), "--seed", str(seed),
            "--latency-ms", str(latency_ms), "--log-level", "WARNING",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Simulator:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
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


def check_output(path: Path, expected: set[int]) -> Check:
    """Compare an output file's rpids with the corpus's: exact set, duplicates counted."""
    seen: set[int] = set()
    lines = duplicates = bad = 0
    if path.is_file():
        with open(path, "rb") as handle:
            for line in handle:
                lines += 1
                try:
                    rpid = int(orjson.loads(line)["rpid"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    bad += 1
                    continue
                if rpid in seen:
                    duplicates += 1
                else:
                    seen.add(rpid)
    return Check(
        lines=lines, unique=len(seen), duplicates=duplicates,
        missing=len(expected - seen), extra=len(seen - expected), bad_lines=bad,
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
    log_dir: Path | None = None,
    keep_output: bool = False,
) -> dict[str, Any]:
    """Run one mode against the simulator; measure it; check its output; return one row."""
    script = MODES_DIR / MODES[mode][0]
    out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-", dir=job.workdir))
    output = out_dir / "comments.jsonl"
    cmd = [
        sys.executable, str(script), "--base-url", job.base_url, "--aids", str(job.workdir / "aids.txt"),
        "--urls", str(job.workdir / "urls.txt"), "--videos", str(job.workdir / "videos.txt"), "--output", str(output),
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
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    epoch_start = time.time()
    measured, text = run_measured(cmd, cwd=out_dir, env=env, timeout_s=timeout_s, log_path=log_path, watchdog=watchdog)
    epoch_end = time.time()
    sim_cpu = sim.cpu_s() - sim_cpu_before
    stats = sim.stats()
    sent = int(stats["requests"]) - requests_before
    steady = steady_rate(stats.get("per_second") or {}, epoch_start, epoch_end)
    result = _parse_result(text)
    check = check_output(output, job.expected)
    if not keep_output:
        shutil.rmtree(out_dir, ignore_errors=True)
    ok = measured.returncode == 0 and check.complete and not measured.timed_out
    fetch_s = measured.wall_s
    if mode == "scraper" and result.get("crawl_s"):
        # The `scraper work` step fetches; end to end is redis-server start to export done
        # (the benchmark's own `scraper stats` call afterwards is left out, wall and CPU).
        fetch_s = float(result["crawl_s"])
        measured.wall_s = float(result.get("e2e_s") or measured.wall_s)
        measured.cpu_s -= float(((result.get("steps") or {}).get("stats") or {}).get("cpu_s") or 0)
    row: dict[str, Any] = {
        "mode": mode,
        "status": "ok" if ok else "FAILED",
        "check": check.describe(),
        "pages": job.pages,
        "comments": job.comments,
        "requests": sent,
        "wall_s": round(measured.wall_s, 3),  # end to end: the whole mode, every step
        "fetch_s": round(fetch_s, 3),  # the command that fetches (scraper: `scraper work`)
        "cpu_s": round(measured.cpu_s, 3),
        "cpu_ms_per_page": round(measured.cpu_s * 1000 / max(job.pages, 1), 3),
        "max_proc_rss_mb": round(measured.max_proc_rss_mb, 1),
        "tree_rss_mb": round(measured.tree_rss_mb, 1),
        "server_cpu_ms_per_page": round(sim_cpu * 1000 / max(sent, 1), 3),
        "steady_pages_per_s": steady,
        "result": result,
    }
    if ok:
        row["pages_per_s"] = round(job.pages / fetch_s, 1)
        row["comments_per_s"] = round(job.comments / fetch_s, 1)
        row["e2e_pages_per_s"] = round(job.pages / measured.wall_s, 1)
    else:
        reason = "timed out / killed" if measured.timed_out else f"exit {measured.returncode}"
        tail = " | ".join(line for line in text.strip().splitlines()[-3:])[:300]
        row["failure"] = f"{reason}; output {check.describe()}; {tail}"
    if mode == "scraper":
        work = (result.get("steps") or {}).get("work") or {}
        row["worker_child_max_rss_mb"] = work.get("worker_child_max_rss_mb")
        row["work_cpu_ms_per_page"] = round(float(work.get("cpu_s") or 0) * 1000 / max(job.pages, 1), 3)
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


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median fetch time (every run must be ok, else the first failure)."""
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        return failed[0]
    ordered = sorted(rows, key=lambda r: r["fetch_s"])
    row = dict(ordered[len(ordered) // 2])
    if len(rows) > 1:
        row["runs"] = len(rows)
        row["fetch_s_all"] = [r["fetch_s"] for r in rows]
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
    for name in ("aiohttp", "uvloop", "orjson", "aiomultiprocess", "redis", "requests", "gevent", "scrapy", "scrapy-redis"):
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
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "redis_server": redis_version,
        "versions": versions,
        "git": _git_head(),
    }


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['date']}; {info['nproc']} cores ({info['cpu_model']}); Python {info['python']}; "
        f"load average at start {info['loadavg_at_start']}; commit {info['git']}"
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
