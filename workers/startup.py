"""How a worker process starts: forked from a server that imported the hot path once.

With the ``spawn`` start method every child is a fresh interpreter that
imports aiohttp (and builds its SSL contexts), redis, orjson, the adapter and
the rest again: ~0.3 s of CPU per child on an idle core, more on a busy box,
and a whole job's worth of it on a ~400-page job. aiomultiprocess also starts
a manager process for every ``Process`` it creates, to carry results that a
worker child never returns.

Instead, ``warm()`` starts multiprocessing's forkserver as early as the
command knows it will need workers: one clean, single-threaded interpreter
that imports ``HOT_MODULES`` while the supervisor goes on with its own
start-up (settings, Redis, coordinate). Every child is then a ``fork()`` of
that server: it starts with everything imported (copy-on-write, so the
children share those pages too) in a few milliseconds, and a restarted child
costs the same. ``fork`` from the supervisor itself is not an option: it runs
an event loop (uvloop does not support forking a running loop) and may hold
threads. (Python 3.14 makes forkserver the default start method on Linux.)

``benchmarks/startup.py`` measures the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import aiomultiprocess
from aiomultiprocess.types import Unit

# The server itself (what it preloads, ``warm``) lives in workers.forkserver,
# importable without aiomultiprocess: the CLI starts it first thing.
from workers.forkserver import HOT_MODULES, START_METHOD, context, warm

__all__ = ["HOT_MODULES", "START_METHOD", "WorkerProcess", "context", "warm"]


class WorkerProcess(aiomultiprocess.Process):  # type: ignore[misc]  # aiomultiprocess is untyped
    """``aiomultiprocess.Process`` forked from the warm forkserver, without a manager.

    The same child entry (``aiomultiprocess.Process.run_async``: a fresh
    event loop from ``loop_initializer``, then the target coroutine) and the
    same interface the supervisor uses (start, is_alive, terminate, kill,
    exitcode, pid, aio_process.sentinel). aiomultiprocess's ``__init__`` also
    starts (once) a manager process and creates a proxy in it for each
    process, used only by ``Worker`` to carry a result back: a worker child
    returns nothing, so that process and its round trips are skipped.
    """

    def __init__(
        self,
        *,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        name: str | None = None,
        loop_initializer: Callable[..., Any] | None = None,
    ) -> None:
        self.unit = Unit(target=target, args=args, kwargs={}, namespace=None, loop_initializer=loop_initializer)
        self.aio_process = context().Process(  # type: ignore[attr-defined]
            target=aiomultiprocess.Process.run_async, args=(self.unit,), name=name
        )
