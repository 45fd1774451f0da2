"""The simulator's data: which videos exist and how many comments each holds.

A corpus is only counts and id ranges, drawn once from the seed; the comment
bodies are rendered lazily per page (see ``render``). That keeps a
333k-comment corpus to a fraction of a second and a few MB.

Id layout of one video (``rpid_base`` = b, ``roots`` = R):

* root comment shown at position i (0 = newest, first on page 1) has
  rpid ``b + R - 1 - i`` (newer comments have larger ids, as on the real site);
* reply k (0 = oldest) of that root has rpid ``b + R + reply_offsets[i] + k``.

Videos take disjoint id blocks with random gaps, so every rpid is unique
across the corpus.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scraper.videos import aid_to_bvid

STATES = ("ok", "closed", "deleted", "empty")

# Shape of the reply distribution: about a quarter of root comments have
# replies, most of those 1-3 (the root's preview holds them all), some 4-20
# (one reply page), a few long threads of several reply pages. Tuned so a
# complete crawl averages close to 20 comments per fetched page (333k comments
# -> ~16.6k pages) with roots about a third of all comments: the free 1-3 reply
# threads make up for the partly filled last page of each longer thread.
_REPLY_SHARE = 0.28
_SMALL_SHARE = 0.82  # of replied roots: 1..3 replies
_MEDIUM_SHARE = 0.12  # of replied roots: 4..20 replies
_LONG_MEAN = 50.0  # the rest: 21 + exponential(mean) replies
_LONG_MAX = 3000
PREVIEW_SIZE = 3

_TITLE_WORDS = (
    "【4K】",
    "实况",
    "教程",
    "合集",
    "Vlog",
    "测评",
    "翻唱",
    "纪录片",
    "速通",
    "解说",
    "cooking",
    "speedrun",
    "lecture",
    "highlights",
    "remix",
    "review",
    "travel",
)


@dataclass(frozen=True, slots=True)
class SimVideo:
    aid: int
    bvid: str
    state: str  # "ok" | "closed" (API 12002) | "deleted" (API -404) | "empty" (ok, no comments)
    roots: int  # root comments
    replies: int = 0  # sub-replies over all roots
    rpid_base: int = 0
    upper_mid: int = 0  # the uploader
    ctime_base: int = 0  # posting time of the oldest root comment
    title: str = ""
    rcounts: tuple[int, ...] = field(default=(), repr=False)  # per root, in page order
    reply_offsets: tuple[int, ...] = field(default=(), repr=False)  # prefix sums, len roots + 1

    @property
    def acount(self) -> int:
        """Roots + sub-replies: ``data.page.acount`` and ``stat.reply``."""
        return self.roots + self.replies

    def root_rpid(self, index: int) -> int:
        return self.rpid_base + self.roots - 1 - index

    def root_index(self, rpid: int) -> int | None:
        """Page-order position of a root comment of this video, or None."""
        index = self.rpid_base + self.roots - 1 - rpid
        return index if 0 <= index < self.roots else None

    def reply_rpid(self, index: int, k: int) -> int:
        return self.rpid_base + self.roots + self.reply_offsets[index] + k


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _draw_rcount(rng: random.Random, long_cap: int) -> int:
    if rng.random() >= _REPLY_SHARE:
        return 0
    u = rng.random()
    if u < _SMALL_SHARE:
        return 1 + int(u / _SMALL_SHARE * 3)
    if u < _SMALL_SHARE + _MEDIUM_SHARE:
        return rng.randint(4, 20)
    return min(long_cap, 21 + int(rng.expovariate(1.0 / _LONG_MEAN)))


def _build_video(rng: random.Random, aid: int, state: str, target: int, rpid_base: int, index: int) -> SimVideo:
    """One video whose roots + replies add up to exactly ``target``."""
    rcounts: list[int] = []
    if state == "ok" and target > 0:
        long_cap = max(24, min(_LONG_MAX, target // 4))
        remaining = target
        while remaining > 0:
            r = min(_draw_rcount(rng, long_cap), remaining - 1)
            rcounts.append(r)
            remaining -= 1 + r
    offsets = [0]
    total = 0
    for r in rcounts:
        total += r
        offsets.append(total)
    words = rng.sample(_TITLE_WORDS, 2)
    return SimVideo(
        aid=aid,
        bvid=aid_to_bvid(aid),
        state=state,
        roots=len(rcounts),
        replies=total,
        rpid_base=rpid_base,
        upper_mid=rng.randrange(10_000, 700_000_000),
        ctime_base=1_600_000_000 + rng.randrange(80_000_000),
        title=f"模拟视频 #{index} {words[0]} {words[1]}",
        rcounts=tuple(rcounts),
        reply_offsets=tuple(offsets),
    )


class Corpus:
    """Every video the simulator serves, deterministic from ``seed``."""

    page_size: int = 20
    max_page: int = 0  # main-comment pages past this answer -400; 0 = no cap
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

    def __repr__(self) -> str:
        return (
            f"Corpus(seed={self.seed}, videos={len(self.videos)}, comments={self.total_comments()}, "
            f"page_size={self.page_size}, max_page={self.max_page})"
        )

    # -- construction -------------------------------------------------------

    @classmethod
    def generate(cls, *, seed: int, videos: int, comments: int, page_size: int = 20, max_page: int = 0) -> Corpus:
        """``videos`` videos holding ``comments`` comments (roots + replies) in total.

        With 3+ videos, video 0 has its comments closed and video 1 has none;
        with 4+, video 2 is deleted. The rest share the comments unevenly.
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
        return cls(cls._build(rng, aids, states, targets), seed=seed, page_size=page_size, max_page=max_page)

    @classmethod
    def for_aids(cls, aids: Sequence[int], *, seed: int, comments_per_video: int = 200, page_size: int = 20) -> Corpus:
        """A corpus where every given aid is an "ok" video (duplicates dropped)."""
        unique = list(dict.fromkeys(aids))
        rng = random.Random(f"scraper-simulator:aids:{seed}")
        return cls(
            cls._build(rng, unique, ["ok"] * len(unique), [comments_per_video] * len(unique)),
            seed=seed,
            page_size=page_size,
        )

    @staticmethod
    def _build(rng: random.Random, aids: Sequence[int], states: list[str], targets: list[int]) -> list[SimVideo]:
        built: list[SimVideo] = []
        rpid_base = 10_000_000_000 + rng.randrange(10**10)
        for index, (aid, state, target) in enumerate(zip(aids, states, targets)):
            video = _build_video(rng, aid, state, target, rpid_base, index)
            built.append(video)
            rpid_base += video.acount + rng.randrange(1_000, 5_000_000)
        return built

    # -- lookups --------------------------------------------------------------

    def video(self, aid: int) -> SimVideo | None:
        return self._by_aid.get(aid)

    def total_comments(self) -> int:
        """Every comment of every ok video, whether a crawl can reach it or not."""
        return sum(video.acount for video in self.videos if video.state == "ok")

    def reachable_roots(self, video: SimVideo) -> int:
        """Roots a crawl can see: those on pages up to ``max_page``."""
        if video.state != "ok":
            return 0
        if self.max_page:
            return min(video.roots, self.max_page * self.page_size)
        return video.roots

    def main_pages(self, video: SimVideo) -> int:
        """Main-comment pages a complete crawl requests for this video.

        Always page 1; then up to ceil(count / page_size), but past the cap only
        page ``max_page + 1`` (which answers -400 and tells the crawler to stop).
        """
        if video.state != "ok":
            return 1
        pages = max(1, _ceil_div(video.roots, self.page_size))
        if self.max_page:
            pages = min(pages, self.max_page + 1)
        return pages

    def reply_threads(self, video: SimVideo) -> list[tuple[int, int]]:
        """(root index, reply pages) of every reachable root whose preview is incomplete."""
        rcounts = video.rcounts
        return [
            (i, _ceil_div(rcounts[i], self.page_size))
            for i in range(self.reachable_roots(video))
            if rcounts[i] > PREVIEW_SIZE
        ]

    # -- what a complete crawl must produce -------------------------------------

    def expected_rpids(self) -> set[int]:
        rpids: set[int] = set()
        for video in self.videos:
            reachable = self.reachable_roots(video)
            if not reachable:
                continue
            top = video.rpid_base + video.roots
            rpids.update(range(top - reachable, top))
            rpids.update(range(top, top + video.reply_offsets[reachable]))
        return rpids

    def expected_comment_count(self) -> int:
        return sum(
            (reachable := self.reachable_roots(video)) + (video.reply_offsets[reachable] if reachable else 0)
            for video in self.videos
        )

    def expected_pages(self) -> int:
        return sum(
            self.main_pages(video) + sum(pages for _, pages in self.reply_threads(video)) for video in self.videos
        )

    def page_urls(self, base_url: str) -> list[str]:
        base = base_url.rstrip("/")
        ps = self.page_size
        urls: list[str] = []
        for video in self.videos:
            aid = video.aid
            urls.extend(
                f"{base}/x/v2/reply?type=1&oid={aid}&pn={pn}&ps={ps}&sort=0"
                for pn in range(1, self.main_pages(video) + 1)
            )
            for index, pages in self.reply_threads(video):
                root = video.root_rpid(index)
                urls.extend(
                    f"{base}/x/v2/reply/reply?type=1&oid={aid}&root={root}&pn={pn}&ps={ps}"
                    for pn in range(1, pages + 1)
                )
        return urls

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
            f"{self.expected_comment_count()} comments; BV ids, av ids and URLs, one duplicate"
        )
        path.write_text("\n".join([header, "", *self.video_refs()]) + "\n", encoding="utf-8")
