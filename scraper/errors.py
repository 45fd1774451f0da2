"""The exception tree. The type of an error decides what happens next.

::

    ScraperError
    ├── UserError                 bad input or configuration -> one line, exit 2
    ├── RuntimeFailure            the run cannot go on (Redis gone, crash loop) -> exit 1
    └── PageError                 one page failed; raised at the fetch boundary only
        ├── TransientError        retry with exponential backoff + jitter
        │   ├── FetchTimeout      (also a TimeoutError)
        │   ├── ConnectionFailed  (also an OSError): reset, refused, DNS
        │   ├── ServerError       HTTP 5xx, API code -500/-503/-509
        │   └── BadPayload        (also a ValueError): invalid JSON, truncated body,
        │                         unexpected shape
        ├── Throttled             HTTP 412/429, API code -412/-352/-799: retry later and
        │                         tell the rate limiter (carries retry_after_s)
        └── PageUnavailable       final, never retried: -404, 12002, -400 depth cap,
                                  other 4xx (carries ``kind``)

Third-party exceptions (aiohttp, asyncio, orjson) are translated once, in
``workers.fetch``; nothing above that layer sees them.
"""

from __future__ import annotations


class ScraperError(Exception):
    """Root of every error this project raises on purpose."""


class UserError(ScraperError):
    """Bad input or configuration. The message is the whole story: what and where."""

    exit_code = 2


class RuntimeFailure(ScraperError):
    """The run cannot continue (Redis unreachable, crash loop, unwritable output)."""

    exit_code = 1


class PageError(ScraperError):
    """One page failed. ``reason`` is a short stable label used in stats and metrics."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransientError(PageError):
    """Worth retrying after a backoff."""

    reason = "transient"


class FetchTimeout(TransientError, TimeoutError):
    reason = "timeout"


class ConnectionFailed(TransientError, OSError):
    reason = "connection"


class ServerError(TransientError):
    reason = "server_error"


class BadPayload(TransientError, ValueError):
    reason = "bad_payload"


class Throttled(PageError):
    """The site pushed back (ban, risk check, too many requests)."""

    reason = "throttled"

    def __init__(self, message: str, *, reason: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class PageUnavailable(PageError):
    """The page will never exist: recorded as final, not retried."""

    reason = "unavailable"

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message, reason=kind)
        self.kind = kind
