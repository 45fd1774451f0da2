"""Who may see what: WBI keys and signatures, device cookies, the login cookie.

Deterministic like the rest of the simulator: keys derive from (seed, rotation
epoch) and device ids from (seed, how many were handed out). Signatures are
checked with the crawler's own ``scraper.targets.wbi`` (one implementation of
the published algorithm, pinned to the published example by its tests).
"""

from __future__ import annotations

import hashlib
import time

from scraper.targets.wbi import sign

WBI_URL = "https://i0.hdslb.com/bfs/wbi/{}.png"
_BROWSER_MARK = "Mozilla/"


def cookies(header: str | None) -> dict[str, str]:
    """The name=value pairs of a ``Cookie`` header (last one wins)."""
    found: dict[str, str] = {}
    if header:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                found[name] = value
    return found


def is_browser(user_agent: str | None) -> bool:
    return bool(user_agent) and _BROWSER_MARK in (user_agent or "")


class WbiKeys:
    """The current (img_key, sub_key): a new pair every ``rotate_s`` seconds (0 = never).

    ``rotate()`` moves to the next pair at once (``POST /_sim/rotate``), so a
    test can rotate without waiting on the clock.
    """

    def __init__(self, seed: int, rotate_s: float) -> None:
        if rotate_s < 0:
            raise ValueError("key_rotate_s must be >= 0")
        self.seed = seed
        self.rotate_s = rotate_s
        self.shift = 0
        self._pair: tuple[int, str, str] = (-1, "", "")

    def epoch(self, now: float | None = None) -> int:
        clock = int((time.time() if now is None else now) // self.rotate_s) if self.rotate_s else 0
        return clock + self.shift

    def current(self) -> tuple[str, str]:
        epoch = self.epoch()
        if self._pair[0] != epoch:
            img = hashlib.md5(f"wbi-img:{self.seed}:{epoch}".encode(), usedforsecurity=False).hexdigest()
            sub = hashlib.md5(f"wbi-sub:{self.seed}:{epoch}".encode(), usedforsecurity=False).hexdigest()
            self._pair = (epoch, img, sub)
        return self._pair[1], self._pair[2]

    def rotate(self) -> tuple[str, str]:
        self.shift += 1
        return self.current()

    def reset(self) -> None:
        self.shift = 0

    def verify(self, params: dict[str, str]) -> bool:
        """Whether ``w_rid`` signs every other parameter (``wts`` included) with the current keys."""
        w_rid = params.get("w_rid")
        wts = params.get("wts")
        if not w_rid or not wts or not wts.isdigit():
            return False
        rest = {k: v for k, v in params.items() if k not in ("w_rid", "wts")}
        img, sub = self.current()
        return sign(rest, img, sub, int(wts))["w_rid"] == w_rid

    def nav_img(self) -> dict[str, str]:
        img, sub = self.current()
        return {"img_url": WBI_URL.format(img), "sub_url": WBI_URL.format(sub)}


class DeviceIds:
    """buvid3 / buvid4 / b_nut values handed out by finger/spi and the home page."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.issued = 0

    def new(self) -> tuple[str, str]:
        self.issued += 1
        digest = hashlib.md5(f"buvid:{self.seed}:{self.issued}".encode(), usedforsecurity=False).hexdigest().upper()
        uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        b3 = f"{uuid}{self.issued % 100000:05d}infoc"
        b4 = f"{uuid[::-1]}-{self.issued}-0"
        return b3, b4
