"""A page task: what a worker fetches. Encoded as orjson in one stream field.

Tasks are small and flat on purpose: they cross Redis on every claim, so the
encoding stays short (one-letter keys are not worth the unreadability; the
whole task is ~80 bytes anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

MAIN = "main"  # a page of root comments by page number (legacy): /x/v2/reply
CURSOR = "cursor"  # a page of root comments by cursor (default): /x/v2/reply/wbi/main
HOT = "hot"  # a page of root comments by page number on the cursor endpoint (mode 3): parallel
REPLY = "reply"  # a page of sub-replies of one root comment: /x/v2/reply/reply
ROOT_KINDS = (MAIN, CURSOR, HOT)  # pages of a video's root list (its chain or its numbered pages)


# Not ``frozen``: a frozen dataclass sets each of its fields through
# ``object.__setattr__`` (1.4 us a task against 0.4), and a worker builds or
# decodes about two tasks a page. Treat a Task as immutable all the same: nothing
# assigns to one; ``replace`` makes a changed copy. ``unsafe_hash``: it stays
# hashable, as equal tasks must be.
@dataclass(slots=True, unsafe_hash=True)
class Task:
    kind: str
    oid: int
    page: int
    root: int = 0
    bvid: str = ""
    attempt: int = 0  # failed attempts so far (a retry carries attempt + 1)
    first_seen_ms: int = 0
    offset: str = ""  # cursor pages: the previous page's next_offset ("" on the first page)
    renewals: int = 0  # -403/-352 retries after a credential renewal (a budget apart from attempts)
    since: int = 0  # refresh: the video's watermark (newest rpid of its last complete crawl); 0 = full crawl
    deep: int = 0  # refresh: 1 = rescan every root page (``--deep``), 0 = stop at the watermark
    # auto paging: > 0 = a cursor chain that continues a video past the legacy depth
    # (this many pages, as the refusal that started it saw it). Its pages up to the
    # ledger's ``depth`` (the lowest refusal) hold roots the legacy pages already
    # fetched: the settle script counts them as known. -1 = a cursor chain over the
    # whole list that counts in their stead (the list moved under them).
    tail: int = 0
    # A one-page thread's page: its root's rcount. The page settles its thread's check
    # alone (fetched against announced) and the video's ledger keeps no fields for the
    # thread; 0 = a page of a longer thread (or a recheck's), counted in the ledger.
    expect: int = 0

    @property
    def fingerprint(self) -> str:
        """Identity of the page, independent of attempts: the dedup key."""
        return f"{self.kind}:{self.oid}:{self.root}:{self.page}"

    def retried(self) -> Task:
        return replace(self, attempt=self.attempt + 1)

    def renewed(self) -> Task:
        """The same page retried after a shared credential renewal: no attempt spent."""
        return replace(self, renewals=self.renewals + 1)

    def fresh(self) -> Task:
        """The same page with its attempts reset (``dead requeue``)."""
        return replace(self, attempt=0, renewals=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "oid": self.oid,
            "page": self.page,
            "root": self.root,
            "bvid": self.bvid,
            "attempt": self.attempt,
            "first_seen_ms": self.first_seen_ms,
            "offset": self.offset,
            "renewals": self.renewals,
            **({"since": self.since, "deep": self.deep} if self.since else {}),
            **({"tail": self.tail} if self.tail else {}),
            **({"expect": self.expect} if self.expect else {}),
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes | str) -> Task:
        data = orjson.loads(raw)
        # Tasks are written by ``encode`` (and by the settle script's formats, with
        # plain integers): the fields map onto the constructor as they are. The
        # careful path converts anything else (a missing or unknown key, a number
        # written as a string or a float).
        try:
            task = cls(**data)
        except TypeError:
            return cls._converted(data)
        if type(task.oid) is int and type(task.page) is int and type(task.root) is int and type(task.since) is int:
            return task
        return cls._converted(data)

    @classmethod
    def _converted(cls, data: dict[str, Any]) -> Task:
        return cls(
            kind=data["kind"],
            oid=int(data["oid"]),
            page=int(data["page"]),
            root=int(data.get("root", 0)),
            bvid=data.get("bvid", ""),
            attempt=int(data.get("attempt", 0)),
            first_seen_ms=int(data.get("first_seen_ms", 0)),
            offset=str(data.get("offset", "")),
            renewals=int(data.get("renewals", 0)),
            since=int(data.get("since", 0)),
            deep=int(data.get("deep", 0)),
            tail=int(data.get("tail", 0)),
            expect=int(data.get("expect", 0)),
        )
