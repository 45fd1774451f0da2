"""The bundled simulator: a Bilibili-shaped comment API served by aiohttp.

``Corpus`` says what exists (deterministic from a seed) and what a complete
crawl must return; ``start_simulator`` / ``run_simulator`` serve it, with
optional latency, injected faults and a per-client rate limit.
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
