"""What crosses between the request path and the endpoints: parameters, callers, answers, cached bodies."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from scraper.simulator.pages import error_body

JSON = "application/json"
NOT_FOUND = error_body(-404, "啥都木有")
MAX_PS = 20


class BadRequest(Exception):
    """A query the real API would answer with code -400."""


class Caller(NamedTuple):
    cookie: str | None
    user_agent: str | None


class Answer(NamedTuple):
    status: int
    code: int  # the body's API code (for stats); the HTTP status for non-JSON bodies
    body: bytes
    content_type: str = JSON
    cookies: tuple[tuple[str, str], ...] = ()


def int_param(params: dict[str, str], key: str, default: int | None = None) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(key)
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(key) from None


def comment_params(params: dict[str, str]) -> tuple[int, int, int]:
    """(oid, pn, ps) of a reply endpoint, checked the way the real API does."""
    if params.get("type") != "1":
        raise BadRequest("type")
    oid = int_param(params, "oid")
    if oid <= 0:
        raise BadRequest("oid")
    pn = max(1, int_param(params, "pn", 1))
    ps = int_param(params, "ps", MAX_PS)
    ps = MAX_PS if ps <= 0 else min(ps, MAX_PS)
    return oid, pn, ps


class PageCache:
    """Rendered bodies, least recently used first out past ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self._bodies: OrderedDict[tuple[int, ...], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def full(self) -> bool:
        return self.bytes >= self.budget_bytes

    def get(self, key: tuple[int, ...]) -> bytes | None:
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
        return body

    def put(self, key: tuple[int, ...], body: bytes) -> bytes:
        self._bodies[key] = body
        self.bytes += len(body)
        while self.bytes > self.budget_bytes and self._bodies:
            _, old = self._bodies.popitem(last=False)
            self.bytes -= len(old)
        return body
