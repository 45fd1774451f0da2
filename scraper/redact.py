"""Secrets never reach the screen: one function every message goes through.

The CLI's error boundary and the log formatter call :func:`redact` on the
final text, so a password inside any URL (``redis://:pw@host``,
``redis://user:pw@``, ``?password=pw``, even one too malformed for urlparse)
and every registered secret value (the cookie) are masked wherever they were
interpolated, by whichever library produced the message.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://[user]:password@  -- the password runs to the last '@' before the
# path, so a password containing '@' or ':' is masked whole.
_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^/?#\s]*)@")
# A query value runs to the next parameter, a space, a quote, or the ": " that
# follows a URL in a message.
_QUERY = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pass|pwd|token|secret|auth)=)(?P<secret>[^&#\s'\"]*?)(?=[&#\s'\"]|:\s|:$|$)",
    re.I,
)

_secrets: set[str] = set()


def add_secret(value: str) -> None:
    """Mask this exact value (a cookie, a token) in every later message."""
    value = value.strip()
    if len(value) >= 4:  # a one-letter "secret" would mask half of every line
        _secrets.add(value)
        # A cookie is 'a=1; b=2': its parts can be printed alone.
        for part in re.split(r";\s*", value):
            _, _, pair_value = part.partition("=")
            if len(pair_value) >= 6:
                _secrets.add(pair_value)


def redact(text: str) -> str:
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@" if m["secret"] else m[0], text)
    text = _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["secret"] else m[0], text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
