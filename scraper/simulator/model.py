"""One simulated video: counts and id ranges, nothing stored per comment.

Id layout of one video (``rpid_base`` = b, ``roots`` = R, pinned thread of P
replies when ``pinned_replies`` = P >= 0):

* root comment shown at list position i (0 = newest) has rpid ``b + R - 1 - i``
  (newer comments have larger ids, as on the real site);
* reply k (0 = oldest) of that root has rpid ``b + R + reply_offsets[i] + k``;
* the uploader's pinned comment (outside the list) has rpid ``b - 1 - P`` and
  its reply k has ``b - P + k``: the oldest ids of the video's block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREVIEW_SIZE = 3  # replies embedded in a root comment
ROOT_GAP_S = 97  # seconds between consecutive root comments
REPLY_GAP_S = 41  # seconds between consecutive replies of one root
PINNED_AGE_S = 600  # the pinned comment is older than every listed root


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class SimVideo:
    aid: int
    bvid: str
    state: str  # "ok" | "closed" (API 12002) | "deleted" (API -404) | "empty" (ok, no comments)
    roots: int  # root comments in the list (the pinned one is not)
    replies: int = 0  # sub-replies over all listed roots
    rpid_base: int = 0
    upper_mid: int = 0  # the uploader
    ctime_base: int = 0  # posting time of the oldest listed root comment
    title: str = ""
    rcounts: tuple[int, ...] = field(default=(), repr=False)  # per root, in page order
    reply_offsets: tuple[int, ...] = field(default=(), repr=False)  # prefix sums, len roots + 1
    pinned_replies: int = -1  # replies of the uploader's pinned comment; -1 = nothing pinned
    # List positions of roots deleted after the list was cached: still listed
    # (rcount > 3, no preview), but their thread answers 12022.
    gone_threads: frozenset[int] = field(default=frozenset(), repr=False)

    @property
    def has_pinned(self) -> bool:
        return self.pinned_replies >= 0

    @property
    def pinned_rpid(self) -> int:
        return self.rpid_base - 1 - self.pinned_replies

    @property
    def pinned_block(self) -> int:
        """Comments of the pinned thread: the comment itself and its replies."""
        return 1 + self.pinned_replies if self.has_pinned else 0

    @property
    def pinned_ctime(self) -> int:
        return self.ctime_base - PINNED_AGE_S

    @property
    def acount(self) -> int:
        """Every comment: ``data.page.acount``, ``cursor.all_count`` and ``stat.reply``."""
        return self.roots + self.replies + self.pinned_block

    def root_rpid(self, index: int) -> int:
        return self.rpid_base + self.roots - 1 - index

    def root_index(self, rpid: int) -> int | None:
        """List position of a listed root comment of this video, or None."""
        index = self.rpid_base + self.roots - 1 - rpid
        return index if 0 <= index < self.roots else None

    def root_ctime(self, index: int) -> int:
        return self.ctime_base + (self.roots - 1 - index) * ROOT_GAP_S

    def reply_rpid(self, index: int, k: int) -> int:
        return self.rpid_base + self.roots + self.reply_offsets[index] + k

    def owns(self, rpid: int) -> bool:
        """Whether ``rpid`` is one of this video's generated comments."""
        low = self.pinned_rpid if self.has_pinned else self.rpid_base
        return low <= rpid < self.rpid_base + self.roots + self.replies

    def newest_ctime(self) -> int:
        """An upper bound of every generated comment's ctime."""
        longest = max(self.rcounts, default=0)
        return self.ctime_base + self.roots * ROOT_GAP_S + max(longest, self.pinned_replies + 1) * REPLY_GAP_S
