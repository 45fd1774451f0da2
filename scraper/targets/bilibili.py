"""The Bilibili comment API (and the bundled simulator, which speaks its shape).

Root comments, by default (``root_paging = "auto"``), come from the legacy
endpoint ``/x/v2/reply`` by page number, every page of a video at once, as far
as the service allows (with login, about 250 pages; without, page 1). A video
deeper than that continues on the cursor endpoint ``/x/v2/reply/wbi/main``
(mode 2, newest first, WBI-signed), a chain in which each page names the next:
it walks past the roots the legacy pages already hold and counts only what
lies beyond (``Task.tail``, the ledger's ``depth``). ``"cursor"`` walks the chain for every video,
``"pages"`` the cursor endpoint by page number (hot order), ``"legacy"`` the
legacy pages alone (a video past their depth stays incomplete, never "done").
Pinned comments sit outside ``replies`` (``data.top.upper``,
``data.top_replies``, ``data.upper.top``) on the first page.

A root whose ``rcount`` exceeds its embedded preview (up to 3 replies) gets
all its ``/x/v2/reply/reply`` pages enqueued at once; otherwise the preview is
complete and is written as is. What the service announces (``all_count``,
``acount``, each thread's ``rcount``) goes to the video's ledger with every
page (see scraper.ledger); parsing lives in ``bilibili_pages``.
"""

from __future__ import annotations

import logging
import time

import orjson

from scraper.errors import BadPayload, PageError, TransientError
from scraper.settings import TargetSettings
from scraper.targets.base import AdapterContext, CredentialsRejected, PageResult, Request
from scraper.targets.bilibili_codes import raise_for_code
from scraper.targets.bilibili_identity import Identity
from scraper.targets.bilibili_pages import PageParser, comment_record
from scraper.targets.wbi import encode_query, sign
from scraper.tasks import CURSOR, HOT, MAIN, Task
from scraper.videos import Video

log = logging.getLogger(__name__)

WEB_LOCATION = 1315875

__all__ = ["BilibiliAdapter", "comment_record"]


class BilibiliAdapter:
    def __init__(self, target: TargetSettings, context: AdapterContext | None = None) -> None:
        self.base_url = target.base_url.rstrip("/")
        self.page_size = target.page_size
        self.root_kind = {"cursor": CURSOR, "pages": HOT}.get(target.root_paging, MAIN)  # auto: legacy first
        self.identity = Identity(context, self.base_url) if context is not None else None
        logged_in = self.identity.logged_in if self.identity is not None else False
        self.pages = PageParser(target, logged_in=logged_in)

    def seed_tasks(self, videos: list[Video]) -> list[Task]:
        return [Task(kind=self.root_kind, oid=v.aid, page=1, bvid=v.bvid) for v in videos]

    # ---- requests ----------------------------------------------------------

    def url(self, task: Task) -> str:
        """The URL of a page that needs no signature (legacy root pages, sub-replies)."""
        if task.kind == MAIN:
            return f"{self.base_url}/x/v2/reply?type=1&oid={task.oid}&pn={task.page}&ps={self.page_size}&sort=0"
        return (
            f"{self.base_url}/x/v2/reply/reply?type=1&oid={task.oid}&root={task.root}"
            f"&pn={task.page}&ps={self.page_size}"
        )

    async def request(self, task: Task) -> Request:
        if self.identity is None:
            if task.kind in (CURSOR, HOT):
                raise TransientError("cursor pages need WBI keys: no worker context", reason="no_context")
            return Request(self.url(task))
        device, device_version = self.identity.device.peek() or await self.identity.device.get()
        headers = {"Cookie": self.identity.cookie(device)}
        versions = {"device": device_version}
        if task.kind not in (CURSOR, HOT):
            return Request(self.url(task), headers, versions)
        keys, wbi_version = await self.identity.wbi.get()
        if not keys:
            raise TransientError("no WBI keys (nav unreachable)", reason="no_wbi_keys")
        offset = task.offset
        if task.kind == HOT and task.page > 1:  # mode-3 offsets carry the page number
            offset = orjson.dumps({"type": 1, "direction": 1, "data": {"pn": task.page}}).decode()
        params = {
            "oid": task.oid,
            "type": 1,
            "mode": 2 if task.kind == CURSOR else 3,
            "pagination_str": orjson.dumps({"offset": offset}).decode(),
            "plat": 1,
            "web_location": WEB_LOCATION,
        }
        signed = sign(params, keys["img_key"], keys["sub_key"], wts=int(time.time()))
        versions["wbi"] = wbi_version
        return Request(f"{self.base_url}/x/v2/reply/wbi/main?{encode_query(signed)}", headers, versions)

    async def renew(self, request: Request | None, exc: CredentialsRejected) -> None:
        if self.identity is None:
            return
        credential = self.identity.wbi if exc.credential == "wbi" else self.identity.device
        refused = request.versions.get(exc.credential, 0) if request is not None else credential.version
        try:
            await credential.renew(refused)
        except (PageError, ValueError) as renew_exc:  # the page retries; the next refusal tries again
            log.warning("could not renew %s: %s", exc.credential, renew_exc)

    # ---- responses ---------------------------------------------------------

    def parse(self, task: Task, body: bytes) -> PageResult:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadPayload(f"invalid JSON ({len(body)} bytes): {exc}", reason="bad_json") from None
        if not isinstance(payload, dict):
            raise BadPayload("JSON body is not an object", reason="bad_json")
        code = payload.get("code")
        if code != 0:
            if code == -400 and task.kind == MAIN and self.pages.auto:
                return self.pages.past_depth(task)  # auto paging: the cursor takes the video over
            raise_for_code(code, str(payload.get("message", "")))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise BadPayload("code 0 without a data object", reason="bad_shape")
        return self.pages.parse(task, data)
