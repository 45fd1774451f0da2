"""Progress where people wait: a live view on a terminal, plain lines elsewhere.

On a terminal the view is drawn by rich (a live region redrawn in place, log
lines printed above it). Worker processes write to the same stderr, and a
live region cannot know about bytes another process writes: while the view
is live, fd 2 is a pipe read by this process and every line that comes
through it (ours, the workers', the simulator's) is printed above the view.
Hand-written escape codes got this wrong (issue 14: log lines and the bar
wrote over each other), rich gets it right and degrades cleanly.

Elsewhere (a pipe, a file, CI) a plain line every few seconds, and one at
the end whose rate is the real average of the run, not the last 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import redis.asyncio as aioredis

from scraper.keys import TargetKeys
from scraper.liveness import is_alive
from scraper.stats import read_stats

BAR_WIDTH = 30
PLAIN_INTERVAL_S = 5.0
LIVE_INTERVAL_S = 0.25


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def format_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 or rate == 0 else f"{rate:.1f}"


def settled_pages(stats: dict[str, Any]) -> int:
    return int(stats["pages_known"] - stats["pages_remaining"])


def progress_line(stats: dict[str, Any], *, bar: bool, rate: float | None = None, average: bool = False) -> str:
    known = max(stats["pages_known"], 1)
    settled = settled_pages(stats)
    fraction = min(settled / known, 1.0)
    shown_rate = stats["pages_per_s_10s"] if rate is None else rate
    text = (
        f"{settled}/{stats['pages_known']} pages  {stats['comments']} comments  "
        f"{format_rate(shown_rate)} pages/s{' average' if average else ''}  queued {stats['queued']}  "
        f"in flight {stats['in_flight']}  retries {stats['retries']}  dead {stats['dead']}"
    )
    if not average:
        text += f"  ETA {format_eta(stats['eta_s'])}"
    if stats.get("waiting_for"):
        text += f"  waiting for {', '.join(stats['waiting_for'])}"
    if not bar:
        return f"progress: {fraction:6.1%} {text}"
    filled = int(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:6.1%} {text}"


def waiting_reason(stats: dict[str, Any], *, heartbeat_s: float, claim_idle_s: float) -> str | None:
    """Why nothing moves, in words, when the reason is knowable from Redis."""
    if stats["pages_per_s_10s"] > 0:
        return None
    held = [c for c in stats["consumers"] if c["pending"] and not is_alive(c, heartbeat_s)]
    if held and stats["in_flight"]:
        oldest = max(held, key=lambda c: c["heartbeat_age_s"])
        stopped = time.strftime("%H:%M:%S", time.localtime(time.time() - oldest["heartbeat_age_s"]))
        takeover = max(claim_idle_s - min(c["idle_s"] for c in held), 0.0)
        pages = sum(c["pending"] for c in held)
        who = oldest["name"] if len(held) == 1 else f"{len(held)} consumers (e.g. {oldest['name']})"
        return f"waiting for {pages} pages held by {who} that stopped heartbeating at {stopped}; " + (
            f"takeover in {takeover:.0f}s" if takeover >= 1 else "takeover due now"
        )
    if not stats["queued"] and not stats["in_flight"] and stats["delayed"]:
        return f"waiting for {stats['delayed']} pages to retry after their backoff"
    return None


@dataclass
class Tracker:
    """What the run saw: for the real average rate at the end."""

    started: float = field(default_factory=time.monotonic)
    first_settled: int | None = None
    last: dict[str, Any] | None = None

    def see(self, stats: dict[str, Any]) -> None:
        if self.first_settled is None:
            self.first_settled = settled_pages(stats)
        self.last = stats

    @property
    def pages(self) -> int:
        if self.last is None or self.first_settled is None:
            return 0
        return settled_pages(self.last) - self.first_settled

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def average_rate(self) -> float:
        return self.pages / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Relay:
    """fd 2 -> a pipe -> lines printed above the live view (see the module docstring)."""

    def __init__(self, emit: Any) -> None:
        self.emit = emit
        self.buffer = b""
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        os.set_blocking(self.read_fd, False)
        asyncio.get_running_loop().add_reader(self.read_fd, self._readable)

    def terminal(self) -> TextIO:
        return os.fdopen(os.dup(self.saved), "w", buffering=1, encoding="utf-8", errors="replace")

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.read_fd, 65536):
                self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.emit(line.decode("utf-8", "replace"))

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # children still alive now write to the terminal directly
        os.close(self.saved)
        asyncio.get_running_loop().remove_reader(self.read_fd)
        self._readable()
        if self.buffer:
            self.emit(self.buffer.decode("utf-8", "replace"))
        os.close(self.read_fd)


class LiveProgress:
    """``async with LiveProgress(...) as tracker:`` shows progress until the block ends."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: TargetKeys,
        *,
        stream: TextIO | None = None,
        heartbeat_s: float = 2.0,
        claim_idle_s: float = 90.0,
        tty: bool | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.out = stream or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.heartbeat_s = heartbeat_s
        self.claim_idle_s = claim_idle_s
        self.tracker = Tracker()
        self.stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._live: Any = None
        self._relay: _Relay | None = None
        self._said: str | None = None

    async def __aenter__(self) -> Tracker:
        if self.tty:
            self._start_live()
        self._task = asyncio.create_task(self._loop())
        return self.tracker

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self._task is not None:
            await self._task
        if self._live is not None:
            self._live.stop()
        if self._relay is not None:
            self._relay.close()

    def _start_live(self) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        if self.out is sys.stderr:
            self._relay = _Relay(lambda line: self._live.console.print(Text(line), soft_wrap=True))
            terminal = self._relay.terminal()
        else:
            terminal = self.out
        console = Console(file=terminal, force_terminal=True, highlight=False)
        self._live = Live(
            Text("starting ..."),
            console=console,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
        )
        self._live.start()

    def _render(self, stats: dict[str, Any], reason: str | None, final: bool) -> Any:
        from rich.console import Group  # noqa: PLC0415
        from rich.progress_bar import ProgressBar  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            ProgressBar(total=max(stats["pages_known"], 1), completed=settled_pages(stats), width=BAR_WIDTH),
            Text(self._line(stats, final).removeprefix("progress: ")),
        )
        return Group(grid, Text(reason, style="yellow")) if reason else grid

    def _line(self, stats: dict[str, Any], final: bool) -> str:
        if final:
            return progress_line(stats, bar=False, rate=self.tracker.average_rate, average=True)
        return progress_line(stats, bar=False)

    async def _loop(self) -> None:
        interval = LIVE_INTERVAL_S if self.tty else PLAIN_INTERVAL_S
        last_plain = 0.0
        while True:
            finished = self.stop.is_set()
            try:
                stats: dict[str, Any] | None = await read_stats(self.client, self.keys)
            except (OSError, aioredis.ConnectionError, aioredis.TimeoutError):
                stats = None
            if stats is not None:
                self.tracker.see(stats)
                reason = (
                    None
                    if finished
                    else waiting_reason(stats, heartbeat_s=self.heartbeat_s, claim_idle_s=self.claim_idle_s)
                )
                if self._live is not None:
                    self._live.update(self._render(stats, reason, finished), refresh=True)
                else:
                    if reason and reason.split(";")[0] != (self._said or "").split(";")[0]:
                        self.out.write(f"progress: {reason}\n")
                    self._said = reason
                    if finished or time.monotonic() - last_plain >= PLAIN_INTERVAL_S:
                        last_plain = time.monotonic()
                        self.out.write(self._line(stats, finished) + "\n")
                    self.out.flush()
            if finished:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=interval)


async def show_progress(
    client: aioredis.Redis, keys: TargetKeys, stop: asyncio.Event, stream: TextIO | None = None
) -> None:
    """Progress until ``stop`` is set (``coordinate --wait``)."""
    async with LiveProgress(client, keys, stream=stream):
        await stop.wait()
