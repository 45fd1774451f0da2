"""The bundled simulator: a Bilibili-shaped comment API served by aiohttp.

``Corpus`` says what exists (deterministic from a seed) and what a complete
crawl must return (``all_rpids``, ``video_rpids``, ``minimal_requests``; the
legacy ``expected_rpids`` / ``page_urls``); ``Corpus.grow`` adds comments while
it is served. ``start_simulator`` / ``run_simulator`` serve it, by default like
the real service (profile "real": WBI signatures with rotating keys, buvid3
and a browser User-Agent on the cursor endpoint, login gating, the legacy
depth cap; "legacy-open" turns every gate off), with optional latency,
injected faults and a per-client rate limit. ``/_sim/*``: see ``admin``.
"""

from scraper.simulator.app import (
    RunningSimulator,
    build_app,
    run_simulator,
    start_simulator,
)
from scraper.simulator.corpus import Corpus, RootRef, SimVideo
from scraper.simulator.options import PROFILES, SimulatorOptions

__all__ = [
    "PROFILES",
    "Corpus",
    "RootRef",
    "RunningSimulator",
    "SimVideo",
    "SimulatorOptions",
    "build_app",
    "run_simulator",
    "start_simulator",
]
