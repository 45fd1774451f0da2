"""Comment objects and page bodies, rendered on demand from the corpus.

Every field of a comment derives from a 64-bit mix of (seed, rpid), so a page
renders identically every time without anything stored per comment. Bodies are
UTF-8 JSON bytes in the real API's envelope; the app caches them.
"""

from __future__ import annotations

import random

import orjson

from scraper.simulator.corpus import Corpus, RootRef
from scraper.simulator.model import PREVIEW_SIZE, REPLY_GAP_S, ROOT_GAP_S, SimVideo

_M64 = (1 << 64) - 1

_UNAMES = (
    "bili_",
    "冰镇西瓜",
    "夜猫子",
    "Lumen",
    "阿狸不吃鱼",
    "kira",
    "咸鱼本鱼",
    "老番茄粉",
    "NightOwl",
    "小明同学",
    "星河滚烫",
    "Traveller",
    "橘子汽水",
    "momo",
    "路过的UP",
    "sakura",
    "三分热度",
    "深海鱼",
    "pixel",
    "不想上班",
)
_SIGNS = (
    "",
    "",
    "",
    "",
    "",
    "",
    "这个人很懒，什么都没有写",
    "keep going",
    "摸鱼中…",
    "hello world",
    "日更失败",
    "🐟",
    "只看不说话",
    "coffee > sleep",
    'say "hi"\\n',
)
_PHRASES = (
    "前排",
    "哈哈哈哈哈",
    "太强了",
    "这个up主讲得很清楚",
    "第一次看到这种操作",
    "有没有人和我一样",
    "三连了",
    "great video",
    "thanks for the upload",
    "where is part 2?",
    "笑死我了",
    "泪目",
    "这段剪辑绝了",
    "BGM是什么",
    "学到了学到了",
    "cool",
    "牛啊",
    "awesome explanation, subscribed",
    "催更",
    "下次一定",
    "打卡",
    "空降 02:33",
    "完全看不懂但大受震撼",
    "the ending got me",
    "nice",
    "好家伙",
    "这不比xx强多了",
    "已经循环十遍了",
    "up主辛苦了",
    '"quoted" \\ slash\ttab',
)
_SEXES = ("男", "女", "保密")
_LEVELS = (1, 2, 3, 4, 4, 5, 5, 6)
# Key order differs from the real API's (JSON objects are unordered) so that
# everything constant within a thread, and everything drawn from the pools,
# each fill one slot: fewer substitutions, faster pages.
_ROOT = b'{"rpid":%d,"rpid_str":"%d","count":%d,"rcount":%d,"ctime":%d,%b%b,"replies":%b}'
_ROOT_THREAD = b'"oid":%d,"type":1,"root":0,"parent":0,"root_str":"0","parent_str":"0","dialog":0,"state":0,'
_REPLY = b'{"rpid":%d,"rpid_str":"%d","dialog":%d,"ctime":%d,%b%b}'
_REPLY_THREAD = (
    b'"oid":%d,"type":1,"root":%d,"parent":%d,"root_str":"%d","parent_str":"%d",'
    b'"count":0,"rcount":0,"state":0,"replies":null,'
)
_TAIL = b'"like":%d,"mid":%d,"member":%b,"content":%b'
_USERS = 4096  # distinct commenters per corpus (people comment more than once)
_MESSAGES = 2048  # distinct message texts per corpus
_TAILS = 1 << 13  # (like, user, message) combinations per pool; a power of two
_MASK = _TAILS - 1
_PICK_MUL = 0x9E3779B1  # Knuth's multiplicative hash: consecutive rpids -> scattered picks
_PINNED_TEXT = orjson.dumps({"message": "【置顶】感谢观看！问题和勘误请在这条评论下回复", "members": [], "emote": None})


def mix64(value: int) -> int:
    """splitmix64 finalizer: a well-spread hash of one integer."""
    value = (value + 0x9E3779B97F4A7C15) & _M64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _M64
    return value ^ (value >> 31)


def _pick(rpid: int) -> int:
    return (rpid * _PICK_MUL >> 16) & _MASK


def _reply_run(tails: list[bytes], aid: int, root: int, first: int, root_ctime: int, start: int, stop: int) -> bytes:
    """Generated replies ``start``..``stop`` of one thread whose first reply has rpid ``first``."""
    thread = _REPLY_THREAD % (aid, root, root, root, root)
    ctime = root_ctime + REPLY_GAP_S * (start + 1)
    parts = []
    for rpid in range(first + start, first + stop):
        parts.append(_REPLY % (rpid, rpid, rpid, ctime, thread, tails[(rpid * _PICK_MUL >> 16) & _MASK]))
        ctime += REPLY_GAP_S
    return b",".join(parts)


class Renderer:
    """Renders one corpus's comments; pure for a given ``corpus.changes.version``.

    A crawl asks for each page about once, so first renders are on the hot
    path. Comments are therefore built straight as JSON bytes (``bytes %``):
    the seed draws pools of pre-encoded (like, user, message) tails, each
    comment picks one by a multiplicative hash of its rpid, and the rest is a
    handful of integers. About 1 us per comment object, several times faster
    than dicts plus orjson; the loops are inlined on purpose. A video with
    added comments or changed likes goes through the slower general path.
    """

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        rng = random.Random(f"scraper-simulator:render:{corpus.seed}")
        users: list[tuple[int, bytes]] = []
        for _ in range(_USERS):
            mid = rng.randrange(10_000, 3_500_000_000)
            name = rng.choice(_UNAMES)
            member = {
                "mid": str(mid),
                "uname": f"{name}{mid % 100_000}" if rng.random() < 0.5 else name,
                "sex": rng.choice(_SEXES),
                "sign": rng.choice(_SIGNS),
                "avatar": f"https://i{rng.randrange(3)}.hdslb.com/bfs/face/{rng.getrandbits(48):012x}.jpg",
                "level_info": {"current_level": rng.choice(_LEVELS)},
            }
            users.append((mid, orjson.dumps(member)))
        contents = [
            orjson.dumps(
                {
                    "message": "，".join(rng.sample(_PHRASES, rng.choice((1, 1, 2, 2, 3)))),
                    "members": [],
                    "emote": None,
                }
            )
            for _ in range(_MESSAGES)
        ]

        def parts(like: int) -> tuple[int, int, bytes, bytes]:
            mid, member = rng.choice(users)
            return like, mid, member, rng.choice(contents)

        # Root comments collect likes with a long tail; replies only a few.
        self._root_parts = [parts(int((rng.paretovariate(1.1) - 1) * 6)) for _ in range(_TAILS)]
        self._reply_parts = [parts(rng.randrange(40)) for _ in range(_TAILS)]
        self._root_tails = [_TAIL % p for p in self._root_parts]
        self._reply_tails = [_TAIL % p for p in self._reply_parts]
        self._hot: dict[int, tuple[int, list[int]]] = {}  # aid -> (changes version, rpids by likes)

    # -- likes -----------------------------------------------------------------

    def like(self, rpid: int, *, root: bool) -> int:
        """The like count a comment shows (a changed one wins)."""
        changed = self.corpus.changes.likes.get(rpid)
        if changed is not None:
            return changed
        return (self._root_parts if root else self._reply_parts)[_pick(rpid)][0]

    def _tail(self, rpid: int, *, root: bool) -> bytes:
        changed = self.corpus.changes.likes.get(rpid)
        if changed is None:
            return (self._root_tails if root else self._reply_tails)[_pick(rpid)]
        _, mid, member, content = (self._root_parts if root else self._reply_parts)[_pick(rpid)]
        return _TAIL % (changed, mid, member, content)

    def _upper_tail(self, video: SimVideo, rpid: int) -> bytes:
        member = orjson.dumps(
            {
                "mid": str(video.upper_mid),
                "uname": f"UP主{video.upper_mid % 10_000}",
                "sex": "保密",
                "sign": "",
                "avatar": "https://i0.hdslb.com/bfs/face/member/noface.jpg",
                "level_info": {"current_level": 6},
            }
        )
        return _TAIL % (self.like(rpid, root=True), video.upper_mid, member, _PINNED_TEXT)

    # -- the fast path: a video nobody changed -----------------------------------

    def _generated_roots(self, video: SimVideo, start: int, stop: int) -> bytes:
        """Generated roots at list positions ``start``..``stop``, each with its preview."""
        aid = video.aid
        thread = _ROOT_THREAD % aid
        top = video.rpid_base + video.roots
        newest = video.ctime_base + (video.roots - 1) * ROOT_GAP_S
        rcounts = video.rcounts
        offsets = video.reply_offsets
        gone = video.gone_threads
        tails = self._root_tails
        reply_tails = self._reply_tails
        parts = []
        for i in range(start, stop):
            rpid = top - 1 - i
            rcount = rcounts[i]
            ctime = newest - ROOT_GAP_S * i
            if rcount and not (gone and i in gone):
                shown = min(PREVIEW_SIZE, rcount)
                run = _reply_run(reply_tails, aid, rpid, top + offsets[i], ctime, 0, shown)
                preview = b"[%b]" % run
            else:
                preview = b"null"
            parts.append(
                _ROOT % (rpid, rpid, rcount, rcount, ctime, thread, tails[(rpid * _PICK_MUL >> 16) & _MASK], preview)
            )
        return b",".join(parts)

    # -- the general path -----------------------------------------------------------

    def replies(self, video: SimVideo, ref: RootRef, start: int, stop: int) -> bytes:
        """Replies ``start``..``stop`` (oldest first) of a thread, comma-joined."""
        if not self.corpus.changed(video):
            stop = min(stop, ref.generated)
            if start >= stop:
                return b""
            return _reply_run(self._reply_tails, video.aid, ref.rpid, ref.first_reply, ref.ctime, start, stop)
        rpids = self.corpus.thread_rpids(video, ref)[start:stop]
        thread = _REPLY_THREAD % (video.aid, ref.rpid, ref.rpid, ref.rpid, ref.rpid)
        ctimes = self.corpus.changes.ctimes
        parts = []
        for rpid in rpids:
            ctime = ctimes.get(rpid) or ref.ctime + REPLY_GAP_S * (rpid - ref.first_reply + 1)
            parts.append(_REPLY % (rpid, rpid, rpid, ctime, thread, self._tail(rpid, root=False)))
        return b",".join(parts)

    def root(self, video: SimVideo, ref: RootRef) -> bytes:
        """One root comment (listed, pinned or added) with its preview."""
        rcount = self.corpus.rcount(video, ref)
        preview = b"[%b]" % self.replies(video, ref, 0, PREVIEW_SIZE) if rcount and not ref.gone else b"null"
        tail = self._upper_tail(video, ref.rpid) if ref.pinned else self._tail(ref.rpid, root=True)
        return _ROOT % (ref.rpid, ref.rpid, rcount, rcount, ref.ctime, _ROOT_THREAD % video.aid, tail, preview)

    def listed(self, video: SimVideo, start: int, stop: int) -> bytes:
        """Listed roots at positions ``start``..``stop`` (newest first), comma-joined."""
        stop = min(stop, self.corpus.list_len(video))
        if start >= stop:
            return b""
        if not self.corpus.changed(video):
            return self._generated_roots(video, start, stop)
        return self.rpids(video, [self.corpus.list_rpid(video, p) for p in range(start, stop)])

    def rpids(self, video: SimVideo, rpids: list[int]) -> bytes:
        """The given listed roots in the given order, comma-joined."""
        parts = []
        for rpid in rpids:
            ref = self.corpus.root(video, rpid)
            assert ref is not None
            parts.append(self.root(video, ref))
        return b",".join(parts)

    def hot_order(self, video: SimVideo) -> list[int]:
        """Listed root rpids by likes (most first; newer first among equals): mode 3."""
        version = self.corpus.changes.version if self.corpus.changed(video) else -1
        cached = self._hot.get(video.aid)
        if cached is not None and cached[0] == version:
            return cached[1]
        corpus = self.corpus
        rpids = [corpus.list_rpid(video, p) for p in range(corpus.list_len(video))]
        rpids.sort(key=lambda rpid: (-self.like(rpid, root=True), -rpid))
        self._hot[video.aid] = (version, rpids)
        return rpids
