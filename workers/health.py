"""`scraper health`: is every worker process of this pod alive and making progress?

Each child writes ``<heartbeat_dir>/<consumer>.beat`` every ``heartbeat_s``
(``workers.heartbeat``): its pid and process start time, how many pages it
holds unsettled, when it last made progress (a settle, a finished request, a
rate-limit grant) and what it waits for. A process is judged:

- gone: its pid is not running (or runs another program): the file is a
  leftover of a killed child and is ignored;
- stalled: the file is older than ``max_age_s``: the event loop stopped;
- wedged: it holds pages, has made no progress for ``stall_s`` and is not
  waiting for Redis (down or refusing writes) or for the rate limiter;
- healthy otherwise.

The probe passes only when at least one process is healthy and none is
stalled or wedged: one wedged child of two fails the pod.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

WAITING_IS_FINE = ("redis", "redis-writes", "site")


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.healthy) and not self.problems


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (ticks since boot): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]  # field 22 of stat; fields[0] is field 3


def check(directory: Path, *, max_age_s: float, stall_s: float) -> Verdict:
    now = time.time()
    healthy: list[str] = []
    problems: list[str] = []
    try:
        files = sorted(directory.glob("*.beat"))
    except OSError:
        files = []
    for path in files:
        try:
            age = now - path.stat().st_mtime
            raw = path.read_bytes()
        except OSError:
            continue
        state = _parse(raw)
        pid = state.get("pid")
        if isinstance(pid, int) and (start := state.get("start")) is not None and process_start(pid) != start:
            continue  # a killed child's leftover
        name = path.stem
        if age > max_age_s:
            problems.append(f"{name}: no heartbeat for {age:.0f}s (event loop stalled)")
            continue
        held = int(state.get("unsettled", 0) or 0)
        progress = float(state.get("progress_ts", now) or now)
        waiting = str(state.get("waiting", "") or "")
        if held and waiting not in WAITING_IS_FINE and now - progress > stall_s:
            problems.append(
                f"{name}: wedged: {held} pages held, no progress for {now - progress:.0f}s while Redis takes writes"
            )
            continue
        healthy.append(name)
    return Verdict(healthy=healthy, problems=problems)


def _parse(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}  # an older worker's empty file: liveness by mtime only
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
