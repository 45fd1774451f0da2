"""Serving the simulator: in the running loop, blocking until a signal, or as an Application.

The request path is ``handler.Simulator``; the endpoints are ``api.Api``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from scraper.simulator.corpus import Corpus
from scraper.simulator.handler import Simulator
from scraper.simulator.options import SimulatorOptions

__all__ = ["SIMULATOR_KEY", "RunningSimulator", "Simulator", "SimulatorOptions", "build_app", "start_simulator"]


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def build_app(corpus: Corpus, options: SimulatorOptions) -> web.Application:
    """The simulator as an Application (for aiohttp's test client and embedding).

    ``start_simulator`` serves the same ``Simulator.dispatch`` through aiohttp's
    low-level server instead: no router, no middleware chain, ~20% more
    requests/s. The app's simulator is ``app[SIMULATOR_KEY]``.
    """
    simulator = Simulator(corpus, options)
    app = web.Application()
    app[SIMULATOR_KEY] = simulator
    app.router.add_route("*", "/{path:.*}", simulator.dispatch)
    return app


class RunningSimulator:
    """A simulator serving on a port; ``close()`` stops it."""

    def __init__(self, runner: web.BaseRunner, simulator: Simulator, host: str, port: int) -> None:
        self._runner = runner
        self.simulator = simulator
        self.corpus = simulator.corpus
        self.port = port
        self.url = f"http://{host}:{port}"

    def stats(self) -> dict[str, Any]:
        """The same numbers as ``GET /_sim/stats``."""
        return self.simulator.stats_dict()

    async def close(self) -> None:
        await self._runner.cleanup()


def _corpus_for(options: SimulatorOptions) -> Corpus:
    return Corpus.generate(
        seed=options.seed,
        videos=options.videos,
        comments=options.comments,
        page_size=options.page_size,
        max_page=options.legacy_cap(),
    )


async def start_simulator(
    options: SimulatorOptions, *, host: str = "127.0.0.1", port: int = 0, corpus: Corpus | None = None
) -> RunningSimulator:
    """Serve in the running loop. A given ``corpus`` replaces the options' seed/videos/comments/max_page."""
    simulator = Simulator(corpus if corpus is not None else _corpus_for(options), options)
    if options.warm_cache:
        simulator.warm()
    runner = web.ServerRunner(web.Server(simulator.dispatch, access_log=None), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return RunningSimulator(runner, simulator, host, bound_port)


def run_simulator(
    options: SimulatorOptions,
    *,
    host: str,
    port: int,
    write_videos: Path | None,
    corpus: Corpus | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (blocking); uvloop when installed."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(options, host=host, port=port, write_videos=write_videos, corpus=corpus))


async def _serve(
    options: SimulatorOptions, *, host: str, port: int, write_videos: Path | None, corpus: Corpus | None
) -> None:
    corpus = corpus if corpus is not None else _corpus_for(options)
    if write_videos is not None:
        corpus.write_videos(write_videos)
    running = await start_simulator(options, host=host, port=port, corpus=corpus)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(
            f"simulator listening on {running.url} ({len(corpus.videos)} videos, "
            f"{corpus.total_comments()} comments, {corpus.expected_pages()} pages, profile {options.profile})",
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await running.close()
