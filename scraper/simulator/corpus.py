"""The simulator's data: which videos exist, their comments, and what a crawl must return.

A corpus is only counts and id ranges, drawn once from the seed (see
``generate`` and ``model``); the comment bodies are rendered lazily per page
(see ``render``). That keeps a 333k-comment corpus to a fraction of a second
and a few MB. Comments added while the simulator runs live in ``changes``.

Two kinds of expectation:

* ``all_rpids`` / ``video_rpids`` / ``minimal_requests``: a complete crawl of
  the service as it is (cursor pages, pinned threads, login): every comment;
* ``expected_rpids`` / ``expected_pages`` / ``page_urls``: what the legacy
  page-numbered endpoint reaches, up to the corpus's ``max_page`` cap.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scraper.simulator import legacy
from scraper.simulator.changes import Changes, Grown
from scraper.simulator.generate import build_videos
from scraper.simulator.growth import grow
from scraper.simulator.model import PREVIEW_SIZE, SimVideo, ceil_div

__all__ = ["PREVIEW_SIZE", "STATES", "Corpus", "RootRef", "SimVideo"]

STATES = ("ok", "closed", "deleted", "empty")
BOOTSTRAP_REQUESTS = 2  # nav (WBI keys) + finger/spi (buvid3), once per crawl


@dataclass(frozen=True, slots=True)
class RootRef:
    """A root comment and where its thread's generated replies are."""

    rpid: int
    ctime: int
    first_reply: int  # rpid of generated reply 0
    generated: int  # generated replies (0 for an added root)
    gone: bool = False  # deleted after listing: its thread answers 12022
    pinned: bool = False


class Corpus:
    """Every video the simulator serves, deterministic from ``seed``."""

    page_size: int = 20
    max_page: int = 0  # legacy pages past this answer -400; 0 = no cap
    videos: list[SimVideo]
    seed: int

    def __init__(self, videos: list[SimVideo], *, seed: int, page_size: int = 20, max_page: int = 0) -> None:
        if not 1 <= page_size <= 20:
            raise ValueError(f"page_size must be 1..20, got {page_size}")
        if max_page < 0:
            raise ValueError(f"max_page must be >= 0, got {max_page}")
        self.videos = videos
        self.seed = seed
        self.page_size = page_size
        self.max_page = max_page
        self._by_aid = {video.aid: video for video in videos}
        if len(self._by_aid) != len(videos):
            raise ValueError("duplicate aid in corpus")
        top = max((v.rpid_base + v.roots + v.replies for v in videos), default=10_000_000_000)
        clock = max((v.newest_ctime() for v in videos), default=1_700_000_000)
        self.changes = Changes(next_rpid=top + 1_000_000, clock=clock + 3_600)

    def __repr__(self) -> str:
        return (
            f"Corpus(seed={self.seed}, videos={len(self.videos)}, comments={self.total_comments()}, "
            f"page_size={self.page_size}, max_page={self.max_page})"
        )

    # -- construction -------------------------------------------------------

    @classmethod
    def generate(
        cls, *, seed: int, videos: int, comments: int, page_size: int = 20, max_page: int = 0, pinned: bool = True
    ) -> Corpus:
        """``videos`` videos holding ``comments`` comments (pinned threads included) in total.

        With 3+ videos, video 0 has its comments closed and video 1 has none;
        with 4+, video 2 is deleted. The rest share the comments unevenly.
        With ``pinned``, the first ok video with 10+ comments and about a third
        of the others have an uploader's pinned comment (outside the list), and
        with 6+ videos, video 4 has a root deleted after listing (its thread answers 12022).
        """
        if videos < 0 or comments < 0:
            raise ValueError("videos and comments must be >= 0")
        rng = random.Random(f"scraper-simulator:{seed}")
        aids = rng.sample(range(1_000_000, 1_000_000_000), videos)
        states = ["ok"] * videos
        if videos >= 3:
            states[0], states[1] = "closed", "empty"
        if videos >= 4:
            states[2] = "deleted"
        ok = [i for i, state in enumerate(states) if state == "ok"]
        weights = [rng.lognormvariate(0.0, 0.7) for _ in ok]
        targets = [0] * videos
        if ok:
            scale = comments / sum(weights)
            shares = [int(w * scale) for w in weights]
            shares[0] += comments - sum(shares)  # rounding leftovers: totals are exact
            for i, share in zip(ok, shares):
                targets[i] = share
        built = build_videos(rng, aids, states, targets, pinned=pinned)
        return cls(built, seed=seed, page_size=page_size, max_page=max_page)

    @classmethod
    def for_aids(
        cls, aids: Sequence[int], *, seed: int, comments_per_video: int = 200, page_size: int = 20, pinned: bool = False
    ) -> Corpus:
        """A corpus where every given aid is an "ok" video (duplicates dropped)."""
        unique = list(dict.fromkeys(aids))
        rng = random.Random(f"scraper-simulator:aids:{seed}")
        built = build_videos(rng, unique, ["ok"] * len(unique), [comments_per_video] * len(unique), pinned=pinned)
        return cls(built, seed=seed, page_size=page_size)

    # -- lookups --------------------------------------------------------------

    def video(self, aid: int) -> SimVideo | None:
        return self._by_aid.get(aid)

    def total_comments(self) -> int:
        """Every comment of every ok video, whether a crawl can reach it or not."""
        return sum(self.all_count(video) for video in self.videos if video.state == "ok")

    def changed(self, video: SimVideo) -> bool:
        return video.aid in self.changes.touched

    def added_roots(self, video: SimVideo) -> list[int]:
        change = self.changes.of(video.aid)
        return change.roots if change is not None else []

    def added_replies(self, video: SimVideo, root: int) -> list[int]:
        change = self.changes.of(video.aid)
        return change.replies.get(root, []) if change is not None else []

    def list_len(self, video: SimVideo) -> int:
        """Root comments in the video's list (the pinned one is not)."""
        return video.roots + len(self.added_roots(video))

    def all_count(self, video: SimVideo) -> int:
        """Every comment of the video, added ones included: ``all_count`` / ``acount``."""
        change = self.changes.of(video.aid)
        if change is None:
            return video.acount
        return video.acount + len(change.roots) + sum(len(r) for r in change.replies.values())

    def list_rpid(self, video: SimVideo, position: int) -> int:
        """The root at list ``position`` (newest first: added roots, then generated)."""
        added = self.added_roots(video)
        if position < len(added):
            return added[len(added) - 1 - position]
        return video.root_rpid(position - len(added))

    def list_position(self, video: SimVideo, cursor: int) -> int:
        """How many listed roots have an rpid >= ``cursor`` (where a mode-2 page resumes)."""
        added = self.added_roots(video)
        newer_added = sum(1 for rpid in added if rpid >= cursor)
        newer_generated = min(video.roots, max(0, video.rpid_base + video.roots - cursor))
        return newer_added + newer_generated

    def root(self, video: SimVideo, rpid: int) -> RootRef | None:
        """The root comment ``rpid`` of ``video`` (listed, pinned or added), or None."""
        index = video.root_index(rpid)
        if index is not None:
            return RootRef(
                rpid,
                video.root_ctime(index),
                video.reply_rpid(index, 0),
                video.rcounts[index],
                index in video.gone_threads,
            )
        if video.has_pinned and rpid == video.pinned_rpid:
            return RootRef(rpid, video.pinned_ctime, rpid + 1, video.pinned_replies, pinned=True)
        if rpid in self.changes.ctimes and rpid in self.added_roots(video):
            return RootRef(rpid, self.changes.ctimes[rpid], 0, 0)
        return None

    def pinned(self, video: SimVideo) -> RootRef | None:
        return self.root(video, video.pinned_rpid) if video.has_pinned else None

    def rcount(self, video: SimVideo, ref: RootRef) -> int:
        return ref.generated + len(self.added_replies(video, ref.rpid))

    def thread_rpids(self, video: SimVideo, ref: RootRef) -> list[int]:
        """Every reply of a thread, oldest first (generated, then added)."""
        return [*range(ref.first_reply, ref.first_reply + ref.generated), *self.added_replies(video, ref.rpid)]

    def owner(self, rpid: int) -> SimVideo | None:
        """The video a comment belongs to (generated or added), or None."""
        for video in self.videos:
            if video.owns(rpid):
                return video
        if rpid in self.changes.ctimes:
            for aid, change in self.changes.videos.items():
                if rpid in change.roots or any(rpid in r for r in change.replies.values()):
                    return self._by_aid[aid]
        return None

    # -- comments added while serving ------------------------------------------

    def grow(
        self, videos: Mapping[int, Mapping[str, object]] | None = None, likes: Mapping[int, int] | None = None
    ) -> Grown:
        """Add comments and change like counts; returns exactly what was added.

        ``videos``: ``{aid: {"roots": n, "replies": {root_rpid: k}}}``: n new
        roots (newest of the video, in that order) and k new replies to existing
        roots (listed, pinned or added earlier; not a deleted one). ``likes``:
        ``{rpid: like}`` for any comment. Everything is checked before anything
        changes: a ValueError leaves the corpus as it was.
        """
        return grow(self, videos or {}, likes or {})

    # -- a complete crawl of the service as it is ------------------------------

    def video_rpids(self, video: SimVideo) -> set[int]:
        """Every comment of one video a complete crawl returns, pinned thread included.

        A deleted root (12022) counts itself but none of its replies: its list
        entry carries no preview and its thread cannot be read.
        """
        if video.state != "ok":
            return set()
        rpids: set[int] = set()
        if video.has_pinned:
            rpids.update(range(video.pinned_rpid, video.rpid_base))
        top = video.rpid_base + video.roots
        rpids.update(range(video.rpid_base, top + video.replies))
        for index in video.gone_threads:
            first = video.reply_rpid(index, 0)
            rpids.difference_update(range(first, first + video.rcounts[index]))
        change = self.changes.of(video.aid)
        if change is not None:
            rpids.update(change.roots)
            for replies in change.replies.values():
                rpids.update(replies)
        return rpids

    def all_rpids(self) -> set[int]:
        """Every comment a complete crawl of every video returns."""
        rpids: set[int] = set()
        for video in self.videos:
            rpids.update(self.video_rpids(video))
        return rpids

    def threads(
        self, video: SimVideo, *, reachable: int | None = None, fan_out: bool = False
    ) -> list[tuple[RootRef, int]]:
        """(root, reply pages to request) of every thread its preview does not hold.

        The pinned thread first, then the listed roots in list order (the first
        ``reachable`` of them). A deleted root costs one request (its 12022),
        or with ``fan_out`` every page its rcount promises (a crawler that
        enqueues all of a thread's pages at once asks for each of them).
        """
        if video.state != "ok":
            return []
        pinned = self.pinned(video)
        count = self.list_len(video) if reachable is None else reachable
        if not self.changed(video):
            ps = self.page_size
            gone = video.gone_threads
            rcounts = video.rcounts
            found = [
                (
                    RootRef(video.root_rpid(i), 0, video.reply_rpid(i, 0), rcounts[i], i in gone),
                    1 if i in gone and not fan_out else ceil_div(rcounts[i], ps),
                )
                for i in range(count)
                if rcounts[i] > PREVIEW_SIZE
            ]
            if pinned is not None and pinned.generated > PREVIEW_SIZE:
                found.insert(0, (pinned, ceil_div(pinned.generated, ps)))
            return found
        refs = [] if pinned is None else [pinned]
        refs.extend(r for r in (self.root(video, self.list_rpid(video, p)) for p in range(count)) if r is not None)
        out: list[tuple[RootRef, int]] = []
        for ref in refs:
            rcount = self.rcount(video, ref)
            if rcount > PREVIEW_SIZE:
                out.append((ref, 1 if ref.gone and not fan_out else ceil_div(rcount, self.page_size)))
        return out

    def minimal_requests(self, *, bootstrap: int = BOOTSTRAP_REQUESTS) -> int:
        """The fewest requests a complete crawl can make (logged in, page size 20).

        ``bootstrap`` (nav + finger/spi) + per video max(1, ceil(listed roots /
        20)) cursor pages (a closed, missing or empty video still costs one) +
        per thread longer than its preview (pinned included) ceil(rcount / 20)
        reply pages (one for a deleted root).
        """
        total = bootstrap
        for video in self.videos:
            total += max(1, ceil_div(self.list_len(video), self.page_size)) if video.state == "ok" else 1
            total += sum(pages for _, pages in self.threads(video))
        return total

    # -- what the legacy page-numbered endpoint reaches (see ``legacy``) --------------

    def reachable_roots(self, video: SimVideo) -> int:
        """Listed roots a legacy crawl can see: those on pages up to ``max_page``."""
        return legacy.reachable_roots(self, video)

    def main_pages(self, video: SimVideo) -> int:
        """Legacy pages a complete crawl requests for this video."""
        return legacy.main_pages(self, video)

    def reply_threads(self, video: SimVideo) -> list[tuple[RootRef, int]]:
        """(root, reply pages) of every thread a legacy crawl reaches whose preview is incomplete."""
        return legacy.reply_threads(self, video)

    def expected_rpids(self) -> set[int]:
        """What a complete legacy crawl returns (all of ``all_rpids`` when there is no cap)."""
        return legacy.expected_rpids(self)

    def expected_comment_count(self) -> int:
        """How many comments a complete legacy crawl returns."""
        return legacy.expected_comment_count(self)

    def expected_pages(self) -> int:
        """How many legacy pages and reply pages a complete legacy crawl requests."""
        return legacy.expected_pages(self)

    def page_urls(self, base_url: str) -> list[str]:
        """Every legacy page and reply page a complete legacy crawl requests."""
        return legacy.page_urls(self, base_url)

    # -- the user's input file ------------------------------------------------

    def video_refs(self) -> list[str]:
        """One line per video in mixed forms, plus one duplicate in another form."""
        forms = (
            lambda v: v.bvid,
            lambda v: f"av{v.aid}",
            lambda v: f"https://www.bilibili.com/video/{v.bvid}/?spm_id_from=333.788",
        )
        refs = [forms[i % 3](video) for i, video in enumerate(self.videos)]
        if self.videos:
            rng = random.Random(f"scraper-simulator:refs:{self.seed}")
            i = rng.randrange(len(self.videos))
            duplicate = forms[(i + 1) % 3](self.videos[i])
            refs.insert(rng.randrange(i + 1, len(refs) + 1), duplicate)
        return refs

    def write_videos(self, path: Path) -> None:
        header = (
            f"# scraper simulator videos (seed {self.seed}): {len(self.videos)} videos, "
            f"{len(self.all_rpids())} comments; BV ids, av ids and URLs, one duplicate"
        )
        path.write_text("\n".join([header, "", *self.video_refs()]) + "\n", encoding="utf-8")
