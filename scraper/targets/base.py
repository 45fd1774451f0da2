"""What a site adapter is: the only place that knows a site's URLs and JSON.

Like a Scrapy spider, an adapter turns a task into a request and a response
body into records and follow-up tasks. It raises the project's PageError
subclasses for API-level failures (HTTP-level ones are classified in
``workers.fetch`` before the adapter sees the body).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from scraper.tasks import Task
from scraper.videos import Video


@dataclass(slots=True)
class PageResult:
    records: list[dict[str, Any]] = field(default_factory=list)  # one per output line
    followups: list[Task] = field(default_factory=list)


class SiteAdapter(Protocol):
    def seed_tasks(self, videos: list[Video]) -> list[Task]:
        """The first page of each video; the workers fan out the rest."""
        ...

    def url(self, task: Task) -> str:
        """Absolute URL of the page a task names."""
        ...

    def parse(self, task: Task, body: bytes) -> PageResult:
        """Records and follow-ups of one page, or a PageError."""
        ...
