"""Drawing a corpus's videos from a seed: how many comments each holds and where.

The reply distribution: about a quarter of root comments have replies, most of
those 1-3 (the root's preview holds them all), some 4-20 (one reply page), a
few long threads of several reply pages. Tuned so a complete crawl averages
close to 20 comments per fetched page (333k comments -> ~16.6k pages) with
roots about a third of all comments: the free 1-3 reply threads make up for
the partly filled last page of each longer thread.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from scraper.simulator.model import SimVideo
from scraper.videos import aid_to_bvid

_REPLY_SHARE = 0.28
_SMALL_SHARE = 0.82  # of replied roots: 1..3 replies
_MEDIUM_SHARE = 0.12  # of replied roots: 4..20 replies
_LONG_MEAN = 50.0  # the rest: 21 + exponential(mean) replies
_LONG_MAX = 3000
_PINNED_SHARE = 0.3  # of ok videos with comments (the first one always has one)
_GONE_SHARE = 0.002  # of long threads: root deleted after the list was cached (12022)

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


def _draw_rcount(rng: random.Random, long_cap: int) -> int:
    if rng.random() >= _REPLY_SHARE:
        return 0
    u = rng.random()
    if u < _SMALL_SHARE:
        return 1 + int(u / _SMALL_SHARE * 3)
    if u < _SMALL_SHARE + _MEDIUM_SHARE:
        return rng.randint(4, 20)
    return min(long_cap, 21 + int(rng.expovariate(1.0 / _LONG_MEAN)))


def _draw_pinned(rng: random.Random, target: int, first: bool) -> int:
    """Replies of the video's pinned comment, or -1 for none; fits in ``target``."""
    if target < 10 or not (first or rng.random() < _PINNED_SHARE):
        return -1
    # The first pinned thread is long (several reply pages), the rest vary.
    replies = 25 + rng.randrange(60) if first else rng.choice((0, 2, 5, 12, 30, 80))
    return min(replies, target // 3)


def build_video(
    rng: random.Random,
    aid: int,
    state: str,
    target: int,
    block_start: int,
    index: int,
    *,
    pinned: bool,
    first: bool,
    force_gone: bool = False,
) -> SimVideo:
    """One video whose comments (pinned thread included) add up to exactly ``target``."""
    pinned_replies = _draw_pinned(rng, target, first) if pinned and state == "ok" else -1
    if pinned_replies >= 0:
        target -= 1 + pinned_replies
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
    long_threads = [i for i, r in enumerate(rcounts) if r > 20]
    gone = {i for i in long_threads if rng.random() < _GONE_SHARE}
    if force_gone and long_threads:
        gone.add(long_threads[0])
    words = rng.sample(_TITLE_WORDS, 2)
    return SimVideo(
        aid=aid,
        bvid=aid_to_bvid(aid),
        state=state,
        roots=len(rcounts),
        replies=total,
        rpid_base=block_start + (1 + pinned_replies if pinned_replies >= 0 else 0),
        upper_mid=rng.randrange(10_000, 700_000_000),
        ctime_base=1_600_000_000 + rng.randrange(80_000_000),
        title=f"模拟视频 #{index} {words[0]} {words[1]}",
        rcounts=tuple(rcounts),
        reply_offsets=tuple(offsets),
        pinned_replies=pinned_replies,
        gone_threads=frozenset(gone),
    )


def build_videos(
    rng: random.Random, aids: Sequence[int], states: list[str], targets: list[int], *, pinned: bool
) -> list[SimVideo]:
    """Videos in disjoint id blocks with random gaps: every rpid is unique across the corpus."""
    built: list[SimVideo] = []
    block_start = 10_000_000_000 + rng.randrange(10**10)
    first = True
    for index, (aid, state, target) in enumerate(zip(aids, states, targets)):
        # With pinned comments on and 6+ videos, video 4 also has a deleted root.
        video = build_video(
            rng,
            aid,
            state,
            target,
            block_start,
            index,
            pinned=pinned,
            first=first,
            force_gone=pinned and index == 4 and len(aids) > 5,
        )
        first = first and not video.has_pinned
        built.append(video)
        block_start += video.acount + rng.randrange(1_000, 5_000_000)
    return built
