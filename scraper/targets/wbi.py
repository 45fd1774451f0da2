"""WBI request signing for the cursor endpoint (pure functions, no I/O).

The service signs a query with a "mixin key" scrambled from two file-name
stems that ``/x/web-interface/nav`` publishes (``img_key``, ``sub_key``). The
algorithm and its published example are in DESIGN.md ("WBI signing");
``tests/test_wbi.py`` pins that example.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

# The published permutation of img_key + sub_key; the first 32 characters are kept.
MIXIN_KEY_ORDER = (
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35,
    27, 43, 5, 49, 33, 9, 42, 19, 29, 28, 14, 39, 12, 38, 41, 13,
    37, 48, 7, 16, 24, 55, 40, 61, 26, 17, 0, 1, 60, 51, 30, 4,
    22, 25, 54, 21, 56, 59, 6, 63, 57, 62, 11, 36, 20, 34, 44, 52,
)  # fmt: skip
_DROPPED = str.maketrans("", "", "!'()*")
# encodeURIComponent leaves A-Z a-z 0-9 and - _ . ! ~ * ' ( ) unescaped; quote()
# always keeps "_.-~", and "!*'()" never reach it (filtered out of values).
_JS_SAFE = "!*'()"
# What js_quote leaves as it is: a value made only of these needs no quote()
# call (the numbers, names and hex digests of a signed query: most of them).
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~!*'()-]*")


class WbiKeyError(ValueError):
    """The nav payload carries no usable wbi_img keys."""


@lru_cache(maxsize=16)  # the keys change about daily; every signed request needs the mixin
def mixin_key(img_key: str, sub_key: str) -> str:
    raw = img_key + sub_key
    return "".join(raw[i] for i in MIXIN_KEY_ORDER if i < len(raw))[:32]


def keys_from_nav(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(img_key, sub_key) from a /x/web-interface/nav body (logged out: code -101, keys still there)."""
    data = payload.get("data")
    wbi = data.get("wbi_img") if isinstance(data, Mapping) else None
    if not isinstance(wbi, Mapping):
        raise WbiKeyError("nav answer without data.wbi_img")
    img, sub = _stem(wbi.get("img_url")), _stem(wbi.get("sub_url"))
    if not img or not sub:
        raise WbiKeyError("nav answer with empty wbi_img urls")
    return img, sub


def _stem(url: Any) -> str:
    if not isinstance(url, str):
        return ""
    name = url.rsplit("/", 1)[-1]
    return name.split(".", 1)[0]


def js_quote(value: str) -> str:
    """Percent-encode like JavaScript's encodeURIComponent (uppercase hex, space = %20)."""
    if _UNQUOTED.fullmatch(value):
        return value
    return _quoted(value)


# A signed query is quoted twice (to sign it, then to send it), and each
# request's pagination string differs: a small cache serves the second time.
@lru_cache(maxsize=1024)
def _quoted(value: str) -> str:
    return quote(value, safe=_JS_SAFE)


def sign(params: Mapping[str, Any], img_key: str, sub_key: str, wts: int) -> dict[str, str]:
    """The parameters to send: filtered values, ``wts`` and ``w_rid``, sorted by key.

    Every parameter is signed. ``w_rid = md5(query + mixin_key)`` where query is
    the sorted, encodeURIComponent-quoted ``k=v&...`` including ``wts``.
    """
    signed = {str(k): str(v).translate(_DROPPED) for k, v in params.items()}
    signed["wts"] = str(wts)
    ordered = dict(sorted(signed.items()))
    query = encode_query(ordered)
    digest = hashlib.md5((query + mixin_key(img_key, sub_key)).encode(), usedforsecurity=False).hexdigest()
    ordered["w_rid"] = digest
    return ordered


def encode_query(params: Mapping[str, str]) -> str:
    """``k=v&k=v`` in the given order, both sides quoted like encodeURIComponent."""
    return "&".join(f"{js_quote(k)}={js_quote(v)}" for k, v in params.items())
