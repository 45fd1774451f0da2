"""A page task: what a worker fetches. Encoded as orjson in one stream field.

Tasks are small and flat on purpose: they cross Redis on every claim, so the
encoding stays short (one-letter keys are not worth the unreadability; the
whole task is ~80 bytes anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

MAIN = "main"  # a page of root comments: /x/v2/reply
REPLY = "reply"  # a page of sub-replies of one root comment: /x/v2/reply/reply


@dataclass(frozen=True, slots=True)
class Task:
    kind: str
    oid: int
    page: int
    root: int = 0
    bvid: str = ""
    attempt: int = 0  # failed attempts so far (a retry carries attempt + 1)
    first_seen_ms: int = 0

    @property
    def fingerprint(self) -> str:
        """Identity of the page, independent of attempts: the dedup key."""
        return f"{self.kind}:{self.oid}:{self.root}:{self.page}"

    def retried(self) -> Task:
        return replace(self, attempt=self.attempt + 1)

    def fresh(self) -> Task:
        """The same page with its attempts reset (``dead requeue``)."""
        return replace(self, attempt=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "oid": self.oid,
            "page": self.page,
            "root": self.root,
            "bvid": self.bvid,
            "attempt": self.attempt,
            "first_seen_ms": self.first_seen_ms,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes | str) -> Task:
        data = orjson.loads(raw)
        return cls(
            kind=data["kind"],
            oid=int(data["oid"]),
            page=int(data["page"]),
            root=int(data.get("root", 0)),
            bvid=data.get("bvid", ""),
            attempt=int(data.get("attempt", 0)),
            first_seen_ms=int(data.get("first_seen_ms", 0)),
        )
