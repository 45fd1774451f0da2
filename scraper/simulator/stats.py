"""What the simulator saw: the numbers behind ``GET /_sim/stats``."""

from __future__ import annotations

import time
from typing import Any

FAULT_KINDS = ("fail", "truncate", "bad_json", "slow", "reset")
PER_SECOND_WINDOW_S = 600  # seconds of per-second history kept


class Stats:
    """Counters for comment-API requests (``/_sim/*`` is never counted)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.per_second: dict[int, int] = {}
        self.peak_per_second = 0
        self.banned_requests = 0
        self.faults = dict.fromkeys(FAULT_KINDS, 0)
        self.by_code: dict[str, int] = {}
        self.by_endpoint: dict[str, dict[str, int]] = {}  # path -> {"requests": n, "<code>": n}
        self._second = 0
        self._second_count = 0

    def request(self, endpoint: str) -> None:
        """One request reached the handler, whatever happens to it next."""
        self.requests += 1
        counts = self.by_endpoint.get(endpoint)
        if counts is None:
            counts = self.by_endpoint[endpoint] = {"requests": 0}
        counts["requests"] += 1
        second = int(time.time())
        if second != self._second:
            self._roll(second)
        self._second_count += 1
        self.peak_per_second = max(self.peak_per_second, self._second_count)

    def _roll(self, second: int) -> None:
        if self._second_count:
            self.per_second[self._second] = self._second_count
        self._second = second
        self._second_count = self.per_second.get(second, 0)
        if len(self.per_second) > PER_SECOND_WINDOW_S:
            oldest = second - PER_SECOND_WINDOW_S
            for key in [key for key in self.per_second if key <= oldest]:
                del self.per_second[key]

    def status(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def answer(self, endpoint: str, code: str) -> None:
        """What one request got: an API code ("0", "-403", ...), "http 412", "fault truncate"..."""
        self.by_code[code] = self.by_code.get(code, 0) + 1
        counts = self.by_endpoint.setdefault(endpoint, {"requests": 0})
        counts[code] = counts.get(code, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        per_second = dict(self.per_second)
        if self._second_count:
            per_second[self._second] = self._second_count
        oldest = int(time.time()) - PER_SECOND_WINDOW_S
        return {
            "requests": self.requests,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "per_second": {str(second): n for second, n in sorted(per_second.items()) if second > oldest},
            "peak_per_second": self.peak_per_second,
            "banned_requests": self.banned_requests,
            "faults": dict(self.faults),
            "by_code": dict(sorted(self.by_code.items())),
            "by_endpoint": {path: dict(counts) for path, counts in sorted(self.by_endpoint.items())},
        }
