"""``python -m scraper.cli`` with the worker start-up from before issue 15, for before/after figures.

Before: ``aiomultiprocess.Process`` with its default ``spawn`` context (each
child a fresh interpreter that imports the hot path) and its manager process;
no forkserver warmed at the start of ``work``/``run``. Everything else is
the current code. Used by ``startup.py --compare`` and by the `scraper` mode
when ``BENCH_LEGACY_START=1``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # a spawned child re-imports this file as __mp_main__: do nothing there
    import aiomultiprocess

    import workers.forkserver
    import workers.startup
    import workers.supervisor

    workers.forkserver.warm = lambda: None  # the CLI's early start (scraper.cli)
    workers.startup.warm = lambda: None
    workers.supervisor.WorkerProcess = aiomultiprocess.Process  # type: ignore[misc]

    from scraper.cli import main

    sys.exit(main())
