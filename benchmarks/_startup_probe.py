"""What a probe child does in ``startup.py``: import the hot path, build a connector, say when.

Module level and light (stdlib only at import), so that a spawned child
pays for exactly what a worker child pays for: ``workers.child`` and the rest.
"""

from __future__ import annotations

import sys
import time


async def probe_child() -> None:
    import aiohttp  # noqa: PLC0415

    import workers.child  # noqa: F401, PLC0415 - the worker's whole hot path (free when preloaded)

    aiohttp.TCPConnector(limit=8)  # a per-child object, built in the child's running loop
    sys.stdout.write(f"READY {time.time():.6f}\n")
    sys.stdout.flush()
