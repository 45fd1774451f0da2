"""The HTTP boundary: one GET, and every aiohttp/asyncio failure translated once.

Above this module nothing sees an aiohttp exception: a fetch returns the body
of a 200 or raises one of the project's PageError types (see scraper.errors).
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from scraper.errors import BadPayload, ConnectionFailed, FetchTimeout, PageUnavailable, ServerError, Throttled

_THROTTLE_STATUSES = {412: "banned", 429: "too_many_requests"}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: rare for this API; fall back to our cooldown


def classify_status(status: int, headers: Mapping[str, str] | None = None) -> None:
    """Raise the PageError a non-200 status means; return for 200."""
    if status == 200:
        return
    if status in _THROTTLE_STATUSES:
        raise Throttled(f"HTTP {status}", reason=_THROTTLE_STATUSES[status], retry_after_s=_retry_after(headers))
    if status >= 500:
        raise ServerError(f"HTTP {status}", reason="http_5xx")
    if status == 408:
        raise FetchTimeout("HTTP 408")
    raise PageUnavailable(f"HTTP {status}", kind="http_4xx" if 400 <= status < 500 else f"http_{status}")


async def fetch(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None) -> bytes:
    """GET ``url``; ``headers`` add to the session's (the adapter's per-request cookies)."""
    try:
        async with session.get(url, allow_redirects=False, headers=headers) as response:
            body = await response.read()
            classify_status(response.status, response.headers)
            return body
    except TimeoutError:
        raise FetchTimeout("request timed out") from None
    except aiohttp.ClientPayloadError as exc:
        raise BadPayload(f"truncated body: {exc}", reason="truncated") from None
    except aiohttp.ServerDisconnectedError:
        raise ConnectionFailed("server closed the connection", reason="reset") from None
    except aiohttp.ClientConnectorError as exc:
        raise ConnectionFailed(f"cannot connect: {exc.os_error}", reason="connect") from None
    except aiohttp.ClientResponseError as exc:
        raise BadPayload(f"bad response: {exc.message}", reason="bad_response") from None
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise ConnectionFailed(f"{type(exc).__name__}: {exc}", reason="connection") from None
