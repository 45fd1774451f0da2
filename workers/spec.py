"""What crosses the process boundary into a worker child: settings and where Redis is.

Kept apart from ``workers.child`` so the supervisor can name the child's entry
point without importing aiohttp and the rest of the hot path itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from scraper.settings import Settings


@dataclass(frozen=True, slots=True)
class ChildSpec:
    settings: Settings
    redis_url: str
    burst: bool
    metrics_dir: str | None = None
    run_id: str = ""  # random per supervisor start: consumer names never repeat across restarts


async def run_child(spec: ChildSpec, index: int) -> None:
    """The child's entry coroutine (module level: the spawn start method pickles it)."""
    from workers.child import child_main  # noqa: PLC0415 - imported in the child only

    await child_main(spec, index)
