"""What a site adapter is: the only place that knows a site's URLs and JSON.

Like a Scrapy spider, an adapter turns a task into a request and a response
body into records and follow-up tasks. It raises the project's PageError
subclasses for API-level failures (HTTP-level ones are classified in
``workers.fetch`` before the adapter sees the body). A page also tells the
video's completeness ledger what it learnt (``PageResult.ledger``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from scraper.errors import PageError
from scraper.settle import LedgerDelta
from scraper.tasks import Task
from scraper.videos import Video

if TYPE_CHECKING:
    import aiohttp
    import redis.asyncio as aioredis

    from scraper.keys import TargetKeys
    from scraper.settings import HttpSettings


@dataclass(slots=True)
class PageResult:
    records: list[dict[str, Any]] = field(default_factory=list)  # one per output line
    followups: list[Task] = field(default_factory=list)
    ledger: LedgerDelta = field(default_factory=LedgerDelta)
    # The next page of a sequential chain (a cursor): the consumer may fetch it
    # at once instead of enqueueing it; either way it is never lost.
    continuation: Task | None = None


@dataclass(slots=True)
class Request:
    """One GET: its URL, per-request headers, and the credential versions it was built with.

    One per request: not ``frozen``, which sets each field through ``object.__setattr__``."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class AdapterContext:
    """What a worker process lends its adapter: shared credentials live in Redis."""

    redis: aioredis.Redis
    keys: TargetKeys
    session: aiohttp.ClientSession
    http: HttpSettings
    cookie_host: str  # the only host the login cookie may go to (the configured target's)


class CredentialsRejected(PageError):
    """The service refused a shared credential (-403 stale WBI keys, -352 device risk check).

    The consumer asks the adapter to renew it (once, centrally) and retries the
    page soon without spending an attempt, within a budget of its own.
    ``cooldown``: tell the rate limiter too (risk control is also a slow-down).
    """

    def __init__(self, message: str, *, reason: str, credential: str, cooldown: bool) -> None:
        super().__init__(message, reason=reason)
        self.credential = credential
        self.cooldown = cooldown


class SiteAdapter(Protocol):
    def seed_tasks(self, videos: list[Video]) -> list[Task]:
        """The first page of each video; the workers fan out the rest."""
        ...

    async def request(self, task: Task) -> Request:
        """The request for the page a task names (signed, with the cookies it may carry)."""
        ...

    def parse(self, task: Task, body: bytes) -> PageResult:
        """Records, follow-ups and ledger facts of one page, or a PageError."""
        ...

    async def renew(self, request: Request | None, exc: CredentialsRejected) -> None:
        """Renew the credential ``exc`` names, unless another process already did."""
        ...
