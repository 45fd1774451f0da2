"""Comments added while the simulator runs (``POST /_sim/grow``, ``Corpus.grow``).

The generated corpus never changes; what users post later is kept here as
explicit ids. New comments take ids above every generated one and ctimes
after every generated one, in the order they are added, as on the real site
where ids and times only grow: a new root is the newest of its video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NEW_COMMENT_GAP_S = 7  # seconds between two added comments


@dataclass
class VideoChanges:
    roots: list[int] = field(default_factory=list)  # added roots, ascending (oldest first)
    replies: dict[int, list[int]] = field(default_factory=dict)  # root rpid -> added replies, ascending


@dataclass
class Grown:
    """What one ``grow`` call added: ``{aid: {"roots": [...], "replies": {root: [...]}}}`` and likes."""

    videos: dict[int, VideoChanges] = field(default_factory=dict)
    likes: dict[int, int] = field(default_factory=dict)

    def rpids(self) -> set[int]:
        added: set[int] = set()
        for change in self.videos.values():
            added.update(change.roots)
            for replies in change.replies.values():
                added.update(replies)
        return added

    def as_json(self) -> dict[str, object]:
        return {
            "videos": {
                str(aid): {
                    "roots": change.roots,
                    "replies": {str(root): replies for root, replies in change.replies.items()},
                }
                for aid, change in self.videos.items()
            },
            "likes": {str(rpid): like for rpid, like in self.likes.items()},
            "rpids": sorted(self.rpids()),
        }


class Changes:
    """Every comment added since the corpus was generated, and every like changed."""

    def __init__(self, next_rpid: int, clock: int) -> None:
        self.next_rpid = next_rpid
        self.clock = clock
        self.videos: dict[int, VideoChanges] = {}
        self.ctimes: dict[int, int] = {}  # added rpid -> ctime
        self.likes: dict[int, int] = {}  # rpid -> like count that replaces the generated one
        self.touched: set[int] = set()  # aids with any change: served by the general renderer
        self.version = 0  # bumped on every change: caches keyed on it go stale

    def _new_id(self) -> int:
        rpid = self.next_rpid
        self.next_rpid += 1
        self.clock += NEW_COMMENT_GAP_S
        self.ctimes[rpid] = self.clock
        return rpid

    def of(self, aid: int) -> VideoChanges | None:
        return self.videos.get(aid)

    def add_roots(self, aid: int, n: int) -> list[int]:
        change = self.videos.setdefault(aid, VideoChanges())
        added = [self._new_id() for _ in range(n)]
        change.roots.extend(added)
        self._touch(aid)
        return added

    def add_replies(self, aid: int, root: int, n: int) -> list[int]:
        change = self.videos.setdefault(aid, VideoChanges())
        added = [self._new_id() for _ in range(n)]
        change.replies.setdefault(root, []).extend(added)
        self._touch(aid)
        return added

    def set_like(self, aid: int, rpid: int, like: int) -> None:
        self.likes[rpid] = like
        self._touch(aid)

    def _touch(self, aid: int) -> None:
        self.touched.add(aid)
        self.version += 1
