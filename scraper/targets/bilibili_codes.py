"""What the comment API's codes (HTTP 200 bodies with ``code != 0``) mean for a page."""

from __future__ import annotations

from typing import Any

from scraper.errors import PageUnavailable, ServerError, Throttled, TransientError
from scraper.targets.base import CredentialsRejected

# API codes (HTTP 200 bodies) and what they mean for the page.
_FINAL_CODES = {
    12002: "closed",  # comments closed
    -404: "deleted",  # no such video
    12022: "deleted",  # root comment deleted
    12006: "deleted",  # no such comment
    -400: "depth_cap",  # "pn out of bounds" / "max offset exceeded"
}
_THROTTLE_CODES = {-412: "banned", -799: "too_frequent"}
_SERVER_CODES = {-500: "server_error", -503: "overloaded", -509: "overloaded"}


def raise_for_code(code: Any, message: str) -> None:
    if code == -403:
        raise CredentialsRejected(f"API code -403: {message}", reason="wbi_rejected", credential="wbi", cooldown=False)
    if code == -352:
        raise CredentialsRejected(f"API code -352: {message}", reason="risk_check", credential="device", cooldown=True)
    if code in _FINAL_CODES:
        raise PageUnavailable(f"API code {code}: {message}", kind=_FINAL_CODES[code])
    if code in _THROTTLE_CODES:
        raise Throttled(f"API code {code}: {message}", reason=_THROTTLE_CODES[code])
    if code in _SERVER_CODES:
        raise ServerError(f"API code {code}: {message}", reason=_SERVER_CODES[code])
    raise TransientError(f"unexpected API code {code}: {message}", reason="api_code")
