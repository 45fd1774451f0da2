"""Comment objects and page bodies, rendered on demand from the corpus.

Every field of a comment derives from a 64-bit mix of (seed, rpid), so a page
renders identically every time without anything stored per comment. Bodies are
UTF-8 JSON bytes in the real API's envelope; the app caches them.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from scraper.simulator.corpus import PREVIEW_SIZE, Corpus, SimVideo

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
_MAIN_PAGE = (
    b'{"code":0,"message":"0","ttl":1,"data":{"page":{"num":%d,"size":%d,"count":%d,"acount":%d},'
    b'"replies":[%b],"upper":{"mid":%d,"top":null},"top_replies":[]}}'
)
_REPLY_PAGE = (
    b'{"code":0,"message":"0","ttl":1,"data":{"page":{"num":%d,"size":%d,"count":%d},'
    b'"replies":[%b],"root":%b,"upper":{"mid":%d}}}'
)
_USERS = 4096  # distinct commenters per corpus (people comment more than once)
_MESSAGES = 2048  # distinct message texts per corpus
_TAILS = 1 << 13  # (like, user, message) combinations per pool; a power of two
_ROOT_GAP_S = 97  # seconds between consecutive root comments
_REPLY_GAP_S = 41  # seconds between consecutive replies of one root
_PICK_MUL = 0x9E3779B1  # Knuth's multiplicative hash: consecutive rpids -> scattered picks


def mix64(value: int) -> int:
    """splitmix64 finalizer: a well-spread hash of one integer."""
    value = (value + 0x9E3779B97F4A7C15) & _M64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _M64
    return value ^ (value >> 31)


def _reply_run(tails: list[bytes], aid: int, root: int, first: int, root_ctime: int, start: int, stop: int) -> bytes:
    """Replies ``start``..``stop`` of one thread whose first reply has rpid ``first``."""
    thread = _REPLY_THREAD % (aid, root, root, root, root)
    mask = _TAILS - 1
    ctime = root_ctime + _REPLY_GAP_S * (start + 1)
    parts = []
    for rpid in range(first + start, first + stop):
        parts.append(_REPLY % (rpid, rpid, rpid, ctime, thread, tails[(rpid * _PICK_MUL >> 16) & mask]))
        ctime += _REPLY_GAP_S
    return b",".join(parts)


class Renderer:
    """Renders one corpus's pages; pure, so its output can be cached freely.

    A crawl asks for each page about once, so first renders are on the hot
    path. Pages are therefore built straight as JSON bytes (``bytes %``): the
    seed draws pools of pre-encoded (like, user, message) tails, each comment
    picks one by a multiplicative hash of its rpid, and the rest is a handful of
    integers. About 1 us per comment object, several times faster than dicts
    plus orjson; the loops are inlined on purpose. Tests parse every page.
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

        def tail(like: int) -> bytes:
            mid, member = rng.choice(users)
            return _TAIL % (like, mid, member, rng.choice(contents))

        # Root comments collect likes with a long tail; replies only a few.
        self._root_tails = [tail(int((rng.paretovariate(1.1) - 1) * 6)) for _ in range(_TAILS)]
        self._reply_tails = [tail(rng.randrange(40)) for _ in range(_TAILS)]

    def _replies(self, video: SimVideo, index: int, start: int, stop: int) -> bytes:
        """Replies ``start``..``stop`` (oldest first) of root ``index``, comma-joined."""
        root_ctime = video.ctime_base + (video.roots - 1 - index) * _ROOT_GAP_S
        return _reply_run(
            self._reply_tails, video.aid, video.root_rpid(index), video.reply_rpid(index, 0), root_ctime, start, stop
        )

    def _roots(self, video: SimVideo, start: int, stop: int) -> bytes:
        """Root comments ``start``..``stop`` in page order, each with its preview."""
        aid = video.aid
        thread = _ROOT_THREAD % aid
        top = video.rpid_base + video.roots
        newest = video.ctime_base + (video.roots - 1) * _ROOT_GAP_S
        rcounts = video.rcounts
        offsets = video.reply_offsets
        tails = self._root_tails
        reply_tails = self._reply_tails
        mask = _TAILS - 1
        parts = []
        for i in range(start, stop):
            rpid = top - 1 - i
            rcount = rcounts[i]
            ctime = newest - _ROOT_GAP_S * i
            if rcount:
                shown = min(PREVIEW_SIZE, rcount)
                run = _reply_run(reply_tails, aid, rpid, top + offsets[i], ctime, 0, shown)
                preview = b"[%b]" % run
            else:
                preview = b"null"
            parts.append(
                _ROOT % (rpid, rpid, rcount, rcount, ctime, thread, tails[(rpid * _PICK_MUL >> 16) & mask], preview)
            )
        return b",".join(parts)

    def root_comment(self, video: SimVideo, index: int) -> bytes:
        """One root comment with its preview of up to three replies."""
        return self._roots(video, index, index + 1)

    def main_page(self, video: SimVideo, pn: int, ps: int) -> bytes:
        """``/x/v2/reply`` page ``pn`` (past the end: an empty list)."""
        start = (pn - 1) * ps
        replies = self._roots(video, start, min(start + ps, video.roots))
        return _MAIN_PAGE % (pn, ps, video.roots, video.acount, replies, video.upper_mid)

    def reply_page(self, video: SimVideo, index: int, pn: int, ps: int) -> bytes:
        """``/x/v2/reply/reply`` page ``pn`` of root ``index`` (past the end: an empty list)."""
        rcount = video.rcounts[index]
        start = (pn - 1) * ps
        replies = self._replies(video, index, start, min(start + ps, rcount))
        return _REPLY_PAGE % (pn, ps, rcount, replies, self.root_comment(video, index), video.upper_mid)

    def count(self, video: SimVideo) -> bytes:
        return ok_body({"count": video.acount})

    def view(self, video: SimVideo) -> bytes:
        return ok_body(
            {
                "aid": video.aid,
                "bvid": video.bvid,
                "title": video.title,
                "pubdate": video.ctime_base - 3_600,
                "owner": {"mid": video.upper_mid, "name": f"UP主{video.upper_mid % 10_000}"},
                "stat": {"aid": video.aid, "reply": video.acount if video.state == "ok" else 0},
            }
        )


def ok_body(data: Any) -> bytes:
    return orjson.dumps({"code": 0, "message": "0", "ttl": 1, "data": data})


def error_body(code: int, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message, "ttl": 1})
