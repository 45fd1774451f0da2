"""The machine's condition and the code's provenance, recorded with every result.

* ``CpuWindow``: CPU utilisation and steal over an interval, from /proc/stat
  (the whole machine: our client, the simulator, Redis, and whatever else
  runs); a figure taken while other work used the cores says so in its file.
* ``provenance()``: the commit, whether the tree was dirty, and the load
  average. ``refuse_dirty()``: a benchmark does not write results from a
  dirty tree unless told ``--force`` (the commit in the file would lie).
* ``pin_simulator()``: on a box with more than two cores, the simulator gets a
  core of its own and the client the rest; on two cores nothing is pinned
  (pinning one process to one of two cores only makes the two fight over the
  other), and the file says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _proc_stat() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()
    return [int(x) for x in fields[1:9]]


@dataclass
class CpuWindow:
    """Machine-wide CPU use between ``start()`` and ``stop()`` (jiffies from /proc/stat)."""

    before: list[int] | None = None
    after: list[int] | None = None

    def start(self) -> CpuWindow:
        self.before = _proc_stat()
        return self

    def stop(self) -> dict[str, float]:
        self.after = _proc_stat()
        return self.result()

    def result(self) -> dict[str, float]:
        if self.before is None or self.after is None:
            return {}
        delta = [b - a for a, b in zip(self.before, self.after, strict=True)]
        total = sum(delta) or 1
        user, nice, system, idle, iowait, irq, softirq, steal = delta
        return {
            "busy_pct": round(100 * (total - idle - iowait) / total, 1),
            "steal_pct": round(100 * steal / total, 2),
            "iowait_pct": round(100 * iowait / total, 2),
        }


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance() -> dict[str, Any]:
    """Commit, dirty flag (changed or untracked files, results files aside), load average now."""
    status = "\n".join(line for line in git("status", "--porcelain").splitlines() if "benchmarks/results/" not in line)
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(status),
        "dirty_files": status.splitlines()[:20],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "nproc": os.cpu_count(),
    }


def refuse_dirty(force: bool, what: str = "results") -> dict[str, Any]:
    """The provenance; exits 2 when the tree is dirty and ``force`` is not set."""
    info = provenance()
    if info["dirty"] and not force:
        print(
            f"refusing to write {what} from a dirty tree (commit {info['commit']} plus uncommitted changes: "
            f"{', '.join(info['dirty_files'][:5])}); commit first, or pass --force (the files then say dirty)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return info


try:
    _CORES = sorted(os.sched_getaffinity(0))  # before any pinning: a second server gets the same core
except (AttributeError, OSError):
    _CORES = []


def pin_simulator(pid: int) -> dict[str, Any]:
    """Give the server (simulator, nginx) its own core where there are more than two; returns what was done."""
    cores = _CORES
    if not cores:
        return {"pinned": False, "why": "no sched_setaffinity here"}
    if len(cores) <= 2:
        return {"pinned": False, "why": f"{len(cores)} cores: client, simulator and Redis share them"}
    sim_core, client_cores = cores[-1], set(cores[:-1])
    try:
        os.sched_setaffinity(pid, {sim_core})
        os.sched_setaffinity(0, client_cores)  # the harness and every mode it starts from now on
    except OSError as exc:
        return {"pinned": False, "why": f"sched_setaffinity failed: {exc}"}
    return {"pinned": True, "simulator_core": sim_core, "client_cores": sorted(client_cores)}


def pss_mb(pid: int) -> float:
    """Proportional set size of one process (shared pages divided among their sharers), MB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0
