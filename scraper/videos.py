"""Video list input: BV ids, av ids and video URLs -> numeric aids.

BV <-> aid is the published offline algorithm (see DESIGN.md): the nine
characters after ``BV1`` are a base-58 number written in a scrambled digit
order; the aid is that number masked to 51 bits and XORed with a constant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scraper.errors import UserError

XOR_CODE = 23442827791579
MASK_CODE = (1 << 51) - 1
MAX_AID = 1 << 51
ALPHABET = "FcwAPNKTMug3GV5Lj7EJnHpWsx4tb8haYeviqBz6rkCy12mUSDQX9RdoZf"
BASE = len(ALPHABET)
_INDEX = {char: i for i, char in enumerate(ALPHABET)}
_BODY_LEN = 9

_BV_RE = re.compile(r"^BV1[1-9A-HJ-NP-Za-km-z]{9}$")
_AV_RE = re.compile(r"^av(\d{1,16})$", re.IGNORECASE)
_URL_RE = re.compile(
    r"^https?://(?:www\.|m\.)?bilibili\.com/video/(BV1[1-9A-HJ-NP-Za-km-z]{9}|av\d{1,16})/?(?:[?#].*)?$",
    re.IGNORECASE,
)


def _swap(chars: list[str]) -> list[str]:
    # The published digit-position scramble, applied to the 12-character
    # "BV1" + body form: it is exactly two swaps (3<->9, 4<->7), its own inverse,
    # so encode and decode share it.
    chars[3], chars[9] = chars[9], chars[3]
    chars[4], chars[7] = chars[7], chars[4]
    return chars


def aid_to_bvid(aid: int) -> str:
    if not 0 < aid < MAX_AID:
        raise ValueError(f"aid out of range: {aid}")
    value = (MAX_AID | aid) ^ XOR_CODE
    chars = ["B", "V", "1"] + ["0"] * _BODY_LEN
    position = len(chars) - 1
    while value > 0 and position > 2:
        chars[position] = ALPHABET[value % BASE]
        value //= BASE
        position -= 1
    return "".join(_swap(chars))


def bvid_to_aid(bvid: str) -> int:
    if not _BV_RE.match(bvid):
        raise ValueError(f"not a BV id: {bvid!r}")
    chars = _swap(list(bvid))
    value = 0
    for char in chars[3:]:
        value = value * BASE + _INDEX[char]
    return (value & MASK_CODE) ^ XOR_CODE


@dataclass(frozen=True, slots=True)
class Video:
    aid: int
    bvid: str


def parse_video_ref(text: str) -> Video:
    """One BV id, av id or video URL -> Video. Raises ValueError with a reason."""
    ref = text.strip()
    match = _URL_RE.match(ref)
    if match:
        ref = match.group(1)
    if _BV_RE.match(ref):
        aid = bvid_to_aid(ref)
        return Video(aid=aid, bvid=ref)
    av = _AV_RE.match(ref)
    if av:
        aid = int(av.group(1))
        if not 0 < aid < MAX_AID:
            raise ValueError(f"av id out of range: {ref!r}")
        return Video(aid=aid, bvid=aid_to_bvid(aid))
    if ref.lower().startswith(("http://", "https://")):
        raise ValueError(f"not a bilibili video URL: {ref!r}")
    if ref.startswith("BV"):
        raise ValueError(f"malformed BV id (want BV1 + 9 base58 characters): {ref!r}")
    raise ValueError(f"not a BV id, av id or video URL: {ref!r}")


@dataclass(frozen=True, slots=True)
class VideoList:
    videos: list[Video]  # unique, in file order
    lines_read: int  # non-blank, non-comment lines
    duplicates: int


def parse_video_lines(lines: list[str], source: str) -> VideoList:
    """Parse every line; the first bad line raises UserError naming source:line."""
    videos: list[Video] = []
    seen: set[int] = set()
    entries = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries += 1
        try:
            video = parse_video_ref(line)
        except ValueError as exc:
            raise UserError(f"{source}:{number}: {exc}") from None
        if video.aid in seen:
            continue
        seen.add(video.aid)
        videos.append(video)
    return VideoList(videos=videos, lines_read=entries, duplicates=entries - len(videos))


def read_video_list(path: Path) -> VideoList:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: video list not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a video list file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read video list: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_video_lines(text.splitlines(), str(path))
