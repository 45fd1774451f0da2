"""What every benchmark mode shares: the URLs, the parse, the record, the output.

The crawl is the one the scraper does (``scraper/targets/bilibili.py``), written
out again here so each mode is a self-contained program a user of that library
could have written:

* ``/x/v2/reply?...&pn=1`` gives ``data.page.count`` (root comments): pages
  2..ceil(count / 20) follow;
* every root comment whose ``rcount`` exceeds its embedded preview gets all
  its ``/x/v2/reply/reply`` pages 1..ceil(rcount / 20); a complete preview is
  written as is;
* an API error (``code != 0``: comments closed, video deleted) ends that video.

Every mode parses with orjson and writes one orjson line per comment with the
same fields as the scraper's export (its BV id and the time it was crawled
included), so the modes differ only in how they schedule the fetching: the
subject of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from scraper.videos import aid_to_bvid

PAGE_SIZE = 20
_BVIDS: dict[int, str] = {}  # oid -> BV id: a user's video list carries both


def main_url(base: str, oid: int, pn: int) -> str:
    return f"{base}/x/v2/reply?type=1&oid={oid}&pn={pn}&ps={PAGE_SIZE}&sort=0"


def reply_url(base: str, oid: int, root: int, pn: int) -> str:
    return f"{base}/x/v2/reply/reply?type=1&oid={oid}&root={root}&pn={pn}&ps={PAGE_SIZE}"


def bvid_of(oid: int) -> str:
    found = _BVIDS.get(oid)
    if found is None:
        found = _BVIDS[oid] = aid_to_bvid(oid)
    return found


def record(comment: dict[str, Any], bvid: str, crawled_at: int) -> dict[str, Any]:
    """The exported shape of one comment (the same fields, in the same order, as ``scraper export``)."""
    member = comment.get("member") or {}
    content = comment.get("content") or {}
    return {
        "rpid": int(comment["rpid"]),
        "oid": int(comment["oid"]),
        "bvid": bvid,
        "root": int(comment.get("root") or 0),
        "parent": int(comment.get("parent") or 0),
        "mid": int(comment.get("mid") or member.get("mid") or 0),
        "uname": member.get("uname", ""),
        "level": (member.get("level_info") or {}).get("current_level"),
        "message": content.get("message", ""),
        "ctime": int(comment.get("ctime") or 0),
        "like": int(comment.get("like") or 0),
        "rcount": int(comment.get("rcount") or 0),
        "crawled_at": crawled_at,
    }


def _query_int(url: str, key: str) -> int:
    start = url.index(f"&{key}=") + len(key) + 2
    end = url.find("&", start)
    return int(url[start : end if end >= 0 else None])


def parse_records(base: str, url: str, body: bytes, *, follow: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """(records of the page's comments, follow-up URLs) of one fetched page.

    ``follow=False`` skips building follow-up URLs (modes that fetch a
    precomputed list).
    """
    payload = orjson.loads(body)
    if payload.get("code") != 0:
        return [], []  # comments closed / video deleted: nothing more for this video
    data = payload["data"]
    replies = data.get("replies") or []
    records: list[dict[str, Any]] = []
    followups: list[str] = []
    oid = _query_int(url, "oid")
    bvid, crawled_at = bvid_of(oid), int(time.time() * 1000)
    if "/x/v2/reply/reply?" in url:
        records.extend(record(reply, bvid, crawled_at) for reply in replies)
        return records, followups
    first = _query_int(url, "pn") == 1
    if follow and first:
        pages = math.ceil(int(data["page"]["count"]) / PAGE_SIZE)
        followups.extend(main_url(base, oid, pn) for pn in range(2, pages + 1))
    if first:  # the uploader's pinned comment lives outside the list, on page 1 only
        pinned = [(data.get("upper") or {}).get("top"), *(data.get("top_replies") or [])]
        seen: set[int] = set()
        replies = [c for c in pinned if c and not (c["rpid"] in seen or seen.add(c["rpid"]))] + replies
    for comment in replies:
        records.append(record(comment, bvid, crawled_at))
        preview = comment.get("replies") or []
        rcount = int(comment.get("rcount") or 0)
        if rcount > len(preview):
            if follow:
                root = int(comment["rpid"])
                pages = math.ceil(rcount / PAGE_SIZE)
                followups.extend(reply_url(base, oid, root, pn) for pn in range(1, pages + 1))
        else:
            records.extend(record(reply, bvid, crawled_at) for reply in preview)
    return records, followups


def parse_page(base: str, url: str, body: bytes, *, follow: bool = True) -> tuple[bytes, list[str]]:
    """(JSON lines of the page's comments, follow-up URLs) of one fetched page."""
    records, followups = parse_records(base, url, body, follow=follow)
    dumps = orjson.dumps
    return b"".join([dumps(r) + b"\n" for r in records]), followups


def seed_urls(base: str, aids_file: str) -> list[str]:
    """Page 1 of every video in the job's aid list (one integer a line)."""
    aids = [int(line) for line in Path(aids_file).read_text().split() if line.strip()]
    return [main_url(base, aid, 1) for aid in aids]


def read_urls(urls_file: str) -> list[str]:
    return [line for line in Path(urls_file).read_text().splitlines() if line]


def arguments(description: str, **extra: tuple[type, Any, str]) -> argparse.Namespace:
    """The flags every mode takes, plus mode-specific ``name=(type, default, help)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--base-url", required=True, help="simulator base URL (127.0.0.1 only)")
    parser.add_argument("--aids", help="file: one video aid a line (modes that discover pages)")
    parser.add_argument("--urls", help="file: every page URL of the crawl (bare, aiomultiprocess-map)")
    parser.add_argument("--videos", help="file: the user's video list (scraper mode)")
    parser.add_argument("--output", required=True, help="JSON lines output file")
    for name, (kind, default, text) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    args = parser.parse_args()
    args.base_url = args.base_url.rstrip("/")
    for name in ("aids", "urls", "videos", "output"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).absolute()))
    return args


def report(pages: int, started: float, **extra: Any) -> None:
    """The mode's last stdout line: one JSON object the harness reads."""
    result = {"pages": pages, "crawl_s": round(time.perf_counter() - started, 4), **extra}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
