"""Is a consumer alive? Read from its heartbeat in Redis (``read_stats``'s consumers).

A heartbeat is written every ``heartbeat_s``; a consumer is dead when its
heartbeat is older than a few intervals, or at once when it ran on this
machine and its process is gone (a hard kill: the proof does not need to
wait for the heartbeat to age).
"""

from __future__ import annotations

import os
import socket
from typing import Any

STALE_BEATS = 5  # heartbeats missed before a consumer elsewhere counts as dead


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    # A killed worker whose parent died too can stay a zombie for long (a
    # container's PID 1 that does not reap): it exists, but it runs nothing.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def is_alive(consumer: dict[str, Any], heartbeat_s: float) -> bool:
    if consumer["heartbeat_age_s"] > STALE_BEATS * heartbeat_s:
        return False
    pid = consumer.get("pid")
    if consumer.get("host") == socket.gethostname() and isinstance(pid, int):
        return not process_gone(pid)
    return True
