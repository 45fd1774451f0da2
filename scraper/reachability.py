"""Is the configured site reachable? Decides the fallback to the simulator.

Resolution comes first: a name that does not resolve (an offline machine)
is answered without sending a packet anywhere.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlparse


async def reachable(url: str, timeout_s: float = 2.0) -> bool:
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True
