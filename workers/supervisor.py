"""`scraper work`: start N worker processes, restart the dead, drain on SIGTERM.

Children are aiomultiprocess processes with ``loop_initializer=
uvloop.new_event_loop``. SIGTERM (Kubernetes scale-down) and SIGINT reach the
supervisor (PID 1 under tini); it forwards SIGTERM to every child, which stops
claiming, finishes or hands back its in-flight pages, flushes, acknowledges
and exits 0. A second SIGINT tells the children to hand back their in-flight
pages at once (nothing stays pending); one still alive 5 s later is killed.

A child that dies (kill -9, a bug) is marked dead in Redis so the other
consumers take its pages over at once, then started again. A child that
cannot write its output exits with ``EXIT_OUTPUT``: the supervisor stops the
others (they hand back what they hold) and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import aiomultiprocess
import uvloop

from scraper.errors import RuntimeFailure
from scraper.keys import TargetKeys
from workers.exits import EXIT_OUTPUT
from workers.heartbeat import child_consumer_name
from workers.spec import ChildSpec, run_child
from workers.startup import WorkerProcess  # forked from a warm forkserver (issue 15)

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

_RESTART_BACKOFF_MAX_S = 10.0
_KILL_MARGIN_S = 5.0


async def _exited(process: aiomultiprocess.Process) -> None:
    """Wait for a child to exit, woken by its sentinel fd (aiomultiprocess's own
    join() polls every 5 ms, a few hundred wake-ups a second per child)."""
    raw = process.aio_process
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(raw.sentinel, wake)
    try:
        if raw.exitcode is None:
            await done
    finally:
        loop.remove_reader(raw.sentinel)
    raw.join()  # reap: returns at once, the process is gone


@dataclass
class Slot:
    index: int
    process: aiomultiprocess.Process
    started: float
    restarts: int = 0


@dataclass
class Supervisor:
    spec: ChildSpec
    processes: int
    slots: dict[int, Slot] = field(default_factory=dict)
    deaths: deque[float] = field(default_factory=deque)
    stopping: bool = False
    forced: bool = False
    interrupts: int = 0

    def _start(self, index: int, restarts: int = 0) -> Slot:
        process = WorkerProcess(
            target=run_child,
            args=(self.spec, index),
            name=f"scraper-worker-{index}",
            loop_initializer=uvloop.new_event_loop,
        )
        process.start()
        slot = Slot(index=index, process=process, started=time.monotonic(), restarts=restarts)
        self.slots[index] = slot
        return slot

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
        if self.stopping and signum == signal.SIGINT:
            self.forced = True
            if self.interrupts > 2:
                return  # already handing back; the kill timer covers a child that hangs
            # The terminal's SIGINT reached the children too; SIGTERM makes sure
            # each counts a second stop: hand back in-flight pages and exit now.
            # Children still alive after the margin are killed.
            log.warning("second interrupt: handing back in-flight pages now")
            for slot in self.slots.values():
                if slot.process.is_alive():
                    slot.process.terminate()
            asyncio.get_running_loop().call_later(_KILL_MARGIN_S, self._kill_stragglers)
            return
        if not self.stopping:
            log.info(
                "%s: draining workers (up to %.0fs)",
                signal.Signals(signum).name,
                self.spec.settings.worker.drain_timeout_s,
            )
            # Children that outlive their drain deadline (a hung page, a stuck
            # flush) are killed: their pages stay pending for other consumers.
            grace = self.spec.settings.worker.drain_timeout_s + _KILL_MARGIN_S
            asyncio.get_running_loop().call_later(grace, self._kill_stragglers)
        self.stopping = True
        for slot in self.slots.values():
            if slot.process.is_alive() and signum == signal.SIGTERM:
                # SIGINT from a terminal already reached the whole process group.
                slot.process.terminate()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        for index in range(self.processes):
            self._start(index)
        log.info("supervisor: %d worker processes started", self.processes)
        waiting = {asyncio.create_task(_exited(slot.process)): slot for slot in self.slots.values()}
        worker = self.spec.settings.worker
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                slot = waiting.pop(finished)
                code = slot.process.exitcode
                self._forget_metrics(slot)
                del self.slots[slot.index]
                if code == EXIT_OUTPUT:
                    self._stop_all()
                    await asyncio.gather(*waiting, return_exceptions=True)
                    raise RuntimeFailure(
                        f"worker {slot.index} could not write its output (see the line above): "
                        "every unsettled page was handed back; fix the output and run again"
                    )
                if code == 0 or self.stopping:
                    continue
                await self._mark_dead(slot)
                self.deaths.append(time.monotonic())
                while self.deaths and time.monotonic() - self.deaths[0] > worker.restart_window_s:
                    self.deaths.popleft()
                if len(self.deaths) >= worker.restart_limit:
                    self._stop_all()
                    await asyncio.gather(*waiting, return_exceptions=True)
                    raise RuntimeFailure(
                        f"worker processes died {len(self.deaths)} times within {worker.restart_window_s:.0f}s "
                        f"(last exit code {code}): stopping; see the log above"
                    )
                delay = min(_RESTART_BACKOFF_MAX_S, 0.5 * 2**slot.restarts)
                log.warning("worker %d exited with code %s: restarting in %.1fs", slot.index, code, delay)
                await asyncio.sleep(delay)
                if self.stopping:
                    continue
                new = self._start(slot.index, slot.restarts + 1)
                waiting[asyncio.create_task(_exited(new.process))] = new
        if self.forced:
            # Interrupted twice: we exit now, with every page handed back. Yet
            # more Ctrl-Cs must not kill the process half-way through its exit.
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return 1
        return 0

    async def _mark_dead(self, slot: Slot) -> None:
        """Its heartbeat would prove it dead only after dead_after_s: say so now."""
        if slot.process.pid is None:
            return
        from redis.asyncio import Redis  # noqa: PLC0415

        from workers.heartbeat import mark_dead  # noqa: PLC0415

        settings = self.spec.settings
        keys = TargetKeys(settings.target.name, settings.redis.key_prefix)
        name = child_consumer_name(socket.gethostname(), self.spec.run_id, slot.process.pid, slot.index)
        client = Redis.from_url(self.spec.redis_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            with contextlib.suppress(Exception):  # best effort: the heartbeat rule still applies
                await mark_dead(client, keys, name)
        finally:
            await client.aclose()

    def _kill_stragglers(self) -> None:
        for slot in self.slots.values():
            if slot.process.is_alive():
                log.warning("worker %d did not drain in time: killing it", slot.index)
                slot.process.kill()

    def _forget_metrics(self, slot: Slot) -> None:
        """A dead child's in-flight gauge must not count any more."""
        if self.spec.metrics_dir and slot.process.pid is not None:
            from prometheus_client import multiprocess  # noqa: PLC0415

            multiprocess.mark_process_dead(slot.process.pid, self.spec.metrics_dir)  # type: ignore[no-untyped-call]

    def _stop_all(self) -> None:
        self.stopping = True
        for slot in self.slots.values():
            if slot.process.is_alive():
                slot.process.terminate()


async def serve_pod_metrics(metrics_dir: str, port: int) -> web.AppRunner:
    """``/metrics`` for the whole pod: the children's multi-process files, aggregated."""
    from aiohttp import web  # noqa: PLC0415
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest  # noqa: PLC0415
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - scraped from inside the cluster
    log.info("metrics on :%d/metrics", port)
    return runner


async def supervise(spec: ChildSpec, processes: int) -> int:
    """Run N children to completion (burst) or until a signal; returns the exit code."""
    port = spec.settings.worker.metrics_port
    runner = None
    spec = replace(spec, run_id=secrets.token_hex(3))
    with tempfile.TemporaryDirectory(prefix="scraper-metrics-") as metrics_dir:
        if port:
            spec = replace(spec, metrics_dir=metrics_dir)
            runner = await serve_pod_metrics(metrics_dir, port)
        try:
            return await Supervisor(spec, processes).run()
        finally:
            if runner is not None:
                await runner.cleanup()
