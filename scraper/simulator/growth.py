"""Checking and applying ``Corpus.grow``: comments added while the simulator runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from scraper.simulator.changes import Grown, VideoChanges
from scraper.simulator.model import SimVideo

if TYPE_CHECKING:
    from scraper.simulator.corpus import Corpus


def grow(corpus: Corpus, videos: Mapping[int, Mapping[str, object]], likes: Mapping[int, int]) -> Grown:
    """Everything is checked before anything changes: a ValueError leaves the corpus as it was."""
    plan: list[tuple[SimVideo, int, dict[int, int]]] = []
    for aid, spec in videos.items():
        video = corpus.video(int(aid))
        if video is None or video.state != "ok":
            raise ValueError(f"video {aid} cannot take comments (missing, closed or deleted)")
        roots = spec.get("roots", 0)
        replies = spec.get("replies", {})
        if not isinstance(roots, int) or roots < 0 or not isinstance(replies, Mapping):
            raise ValueError(f"video {aid}: roots must be an int >= 0 and replies a mapping")
        wanted: dict[int, int] = {}
        for root, n in replies.items():
            ref = corpus.root(video, int(root))
            if ref is None or ref.gone:
                raise ValueError(f"video {aid} has no root comment {root} that can take replies")
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"replies to {root} must be an int >= 0")
            wanted[int(root)] = n
        plan.append((video, roots, wanted))
    owners: dict[int, SimVideo] = {}
    for rpid, like in likes.items():
        owner = corpus.owner(int(rpid))
        if owner is None or not isinstance(like, int) or like < 0:
            raise ValueError(f"no comment {rpid} to set {like!r} likes on")
        owners[int(rpid)] = owner
    grown = Grown()
    for video, roots, wanted in plan:
        change = grown.videos.setdefault(video.aid, VideoChanges())
        change.roots.extend(corpus.changes.add_roots(video.aid, roots))
        for root, n in wanted.items():
            change.replies[root] = corpus.changes.add_replies(video.aid, root, n)
    for rpid, like in likes.items():
        corpus.changes.set_like(owners[int(rpid)].aid, int(rpid), like)
        grown.likes[int(rpid)] = like
    return grown
