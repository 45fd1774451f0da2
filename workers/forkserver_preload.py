"""Imported by the workers' forkserver only (``workers.startup.HOT_MODULES``), never by anything else.

Importing it loads the whole hot path into the forkserver, then moves every
object of that heap into the GC's permanent generation (``gc.freeze``).
Without the freeze, each forked child's first collection (``child_main``
runs ``gc.collect()``) walks the inherited heap and writes to every object's
GC header: copy-on-write faults on most of those pages, measured at ~0.13 s
per child on a busy 2-core box; with it, ~0 (the recipe the ``gc.freeze``
documentation gives for pre-fork servers).
"""

from __future__ import annotations

import gc
import importlib

# What a child unpickles before it runs anything: aiomultiprocess's entry
# (Process.run_async, its Unit), the loop initializer (uvloop) and the target
# (workers.spec.run_child). Not imported here, each child imported them after
# the fork: aiomultiprocess with multiprocessing's managers, pool and
# shared_memory, and uvloop, ~25 ms of CPU per child start (issue 15).
import aiomultiprocess  # noqa: F401
import uvloop  # noqa: F401

import workers.child  # noqa: F401 - the import is the point: aiohttp, redis, orjson, the queue, the sink
import workers.spec  # noqa: F401
from scraper.targets import ADAPTERS

for _spec in ADAPTERS.values():  # load_adapter() imports the target's adapter by name: have them all
    importlib.import_module(_spec.partition(":")[0])

# Not prometheus_client: it picks its storage when first imported, and a child
# points it at the supervisor's metrics directory before that (scraper.metrics).
gc.collect()
gc.freeze()
