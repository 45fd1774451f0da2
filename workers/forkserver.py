"""The workers' forkserver: which modules it preloads, and starting it early (``warm``).

Kept apart from ``workers.startup`` (the process class, which needs
aiomultiprocess and asyncio) so that the CLI can start the server before it
imports anything else: the server's own imports (~0.25 s of CPU) are the
longest step of a short job's start-up, and they overlap the command's
start-up only from the moment ``warm()`` runs (issue 15).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import signal

# Imported once in the forkserver; every child inherits them: workers.child's
# whole hot path (aiohttp with its SSL contexts, redis.asyncio, orjson, the
# targets, the sink), then gc.freeze() so the children's first collection
# does not touch (and copy) every inherited page.
HOT_MODULES = ["workers.forkserver_preload"]

# Windows has no forkserver: there the children spawn (slower, same behaviour).
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context worker children start from (preload set)."""
    ctx = multiprocessing.get_context(START_METHOD)
    ctx.set_forkserver_preload(HOT_MODULES)
    return ctx


def warm() -> None:
    """Start the forkserver now, so its imports overlap the caller's own start-up.

    Returns at once (the server imports in its own process); the first child
    waits only for what is left of that import. Idempotent and cheap.
    """
    context()
    if START_METHOD == "forkserver":
        multiprocessing.forkserver.ensure_running()


def stop() -> None:
    """End the forkserver this process started, without waiting for it.

    Called on the way out, when the workers have stopped: a server started
    speculatively by ``warm()`` for a queue that turned out empty would
    otherwise finish its ~0.25 s of imports before it noticed that its
    parent was gone, holding the command's stdout and stderr open (a pipe
    reader, like ``| tee``, waited for it). multiprocessing keeps the pid
    in a private attribute: without it there is nothing to do.
    """
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)  # noqa: SLF001
    if isinstance(pid, int) and pid > 0:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
