"""The closing summary of `scraper run`, and the exit code it implies.

Exit codes of `run`: 0 every page settled and nothing incomplete; 3 pages
went to the dead letters or videos are incomplete; 130 interrupted (Ctrl-C
or SIGTERM) with work left in the queue (run it again to resume); 1 a
failure; 2 bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from scraper.export import ExportSummary
    from scraper.settings import Settings

EXIT_OK = 0
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class VideoOutcome:
    """Per-video completeness, from the completeness report."""

    complete: int
    incomplete: int
    lines: list[str] = field(default_factory=list)  # printed under the summary (e.g. one per incomplete video)


async def per_video_summary(client: aioredis.Redis, settings: Settings) -> VideoOutcome:
    """The per-video part of the summary, from the completeness ledger (scraper.report)."""
    from scraper.keys import TargetKeys  # noqa: PLC0415
    from scraper.report import build_report, render_summary  # noqa: PLC0415

    keys = TargetKeys(settings.target.name, settings.redis.key_prefix)
    document, code = await build_report(client, keys)
    summary: dict[str, int] = document["summary"]
    lines = [render_summary(summary)]
    not_done = [v for v in document["videos"] if v["status"] in ("incomplete", "pending")]
    for video in not_done[:10]:
        lines.append(f"{video['bvid']}: {video['status']}: {video['reason']}")
    if len(not_done) > 10:
        lines.append(f"... and {len(not_done) - 10} more: `scraper report --target {settings.target.name}`")
    incomplete = len(not_done) if code != 0 else 0
    return VideoOutcome(complete=summary.get("complete", 0), incomplete=incomplete, lines=lines)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    target: str
    videos: int
    output: str
    export: ExportSummary | None
    pages: int  # settled during this run
    elapsed_s: float
    left: dict[str, int]  # queued / in_flight / delayed at the end
    dead: int
    videos_outcome: VideoOutcome | None
    idle: bool = False  # nothing to do: no workers started

    @property
    def interrupted(self) -> bool:
        return any(self.left.values())

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.dead or (self.videos_outcome is not None and self.videos_outcome.incomplete):
            return EXIT_INCOMPLETE
        return EXIT_OK

    def lines(self) -> list[str]:
        name = f"run {self.target}"
        out: list[str] = []
        if self.export is not None:
            out.append(
                f"{name}: {self.export.comments} comments -> {self.output} "
                f"({self.export.duplicates} duplicates removed)"
            )
        rate = self.pages / self.elapsed_s if self.elapsed_s > 0 else 0.0
        outcome = self.videos_outcome
        videos = f"{self.videos} videos"
        if outcome is not None:
            videos += f" ({outcome.complete} complete, {outcome.incomplete} incomplete)"
        work = (
            "nothing left to crawl, no workers started"
            if self.idle
            else f"{self.pages} pages in {self.elapsed_s:.1f}s ({rate:.1f} pages/s average)"
        )
        out.append(f"{name}: {videos}; {work}; {self.dead} dead letters")
        if outcome is not None:
            out.extend(f"  {line}" for line in outcome.lines)
        if self.interrupted:
            left = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.left.items() if v)
            out.append(f"{name}: interrupted with pages left ({left}): run the same command again to resume")
        elif self.dead:
            out.append(f"{name}: incomplete: see `scraper dead list --target {self.target}`, then `dead requeue --all`")
        elif outcome is not None and outcome.incomplete:
            out.append(f"{name}: incomplete videos (exit 3)")
        return out


def describe_left(counts: Any) -> dict[str, int]:
    return {"queued": counts.queued, "in_flight": counts.in_flight, "delayed": counts.delayed}
