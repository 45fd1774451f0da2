"""A blocking claim that ends when its BLOCK says, whatever the server's ``hz``.

Redis ends a blocked read whose timeout passed at its next wake-up. A busy
server wakes all the time; an idle one only for its cron, every ``1000 / hz``
ms (100 ms at the default ``hz 10``). Measured on redis-server 7.0, idle:
``XREADGROUP ... BLOCK 25`` (or ``BLOCK 1``) returns after 101 ms; with
``hz 100``, after 30 ms. A burst's last claims are such reads on a server
gone quiet: the last worker waited up to 100 ms for a claim that could only
come back empty (on a ~400-page job, a fifth of the scraper's whole run;
issue 15). Any command wakes the server, so a read still out shortly after
its timeout gets a PING beside it, on another connection of the pool. Not a
cancel: a reply cut off could strand the entries it delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

NUDGE_AFTER_S = 0.005  # past the read's BLOCK


async def claim_on_time(claim: Awaitable[T], block_s: float, wake: Callable[[], Awaitable[Any]]) -> T:
    """Await ``claim`` (a blocking read of ``block_s``); if it is still out ``NUDGE_AFTER_S``
    after its timeout, ``wake`` the server once, then wait for the read's own reply."""
    read = asyncio.ensure_future(claim)
    try:
        done, _ = await asyncio.wait({read}, timeout=block_s + NUDGE_AFTER_S)
        if not done:
            await wake()
        return await read
    except BaseException:
        # Cancelled, or the wake-up failed: the read goes as an await of it alone would
        # have gone (a no-op if it already ended); the stop path hands strays back.
        read.cancel()
        raise
