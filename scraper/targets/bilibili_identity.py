"""Who the crawler is to the service: WBI keys, the device cookie, the user's login cookie.

- WBI keys come from ``/x/web-interface/nav`` (logged out it answers -101 and
  still carries them); the device cookie ``buvid3`` from
  ``/x/frontend/finger/spi`` (``data.b_3``), or the home page's Set-Cookie.
  Both are SharedCredentials: cached in Redis, one per target, renewed once
  for everyone.
- The login cookie (``SESSDATA=...``) is the user's, from SCRAPER_COOKIE or the
  cookie file. It goes only to the configured target host over https, or to a
  loopback address, whatever base URL the workers were handed; it is never
  logged (nothing here formats it into a message).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

import orjson

from scraper.errors import BadPayload, ConnectionFailed, PageError, UserError
from scraper.targets.base import AdapterContext
from scraper.targets.bilibili_codes import raise_for_code
from scraper.targets.credentials import SharedCredential
from scraper.targets.wbi import keys_from_nav

# aiohttp (and workers.fetch, which imports it) are imported where a request is
# made: `scraper coordinate` loads this adapter only for its seed tasks, and
# importing aiohttp (its SSL contexts included) is ~0.15 s of CPU per command
# (issue 15). A worker has it already: its forkserver preloads the hot path.

WBI_MAX_AGE_S = 20 * 3600.0  # the keys change about daily: refresh at least that often
DEVICE_MAX_AGE_S = 7 * 86400.0


def load_user_cookie(cookie: str, cookie_file: str) -> str:
    """The user's cookie string (SCRAPER_COOKIE wins over the file)."""
    if cookie:
        return cookie.strip()
    if not cookie_file:
        return ""
    try:
        return Path(cookie_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"{cookie_file}: cookie file not readable: {exc.strerror}") from None


def parse_cookie(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            pairs[name.strip()] = value.strip()
    return pairs


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_allowed(url: str, cookie_host: str) -> bool:
    """The login cookie may go to this URL: a loopback address, or the target's own host over https."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if is_loopback(host):
        return True
    return parsed.scheme == "https" and bool(cookie_host) and host == cookie_host.lower()


class Identity:
    """The credentials of one target in one process (shared with all others through Redis)."""

    def __init__(self, context: AdapterContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        keys = context.keys
        self.user = parse_cookie(load_user_cookie(context.http.cookie, context.http.cookie_file))
        self.login_allowed = cookie_allowed(base_url, context.cookie_host)
        self.logged_in = self.login_allowed and "SESSDATA" in self.user
        self._cookie_device: dict[str, str] | None = None  # what cookie() last built its answer from
        self._cookie = ""
        self.wbi = SharedCredential(
            context.redis, keys.wbi, keys.lock("wbi"), keys.stats, self._fetch_wbi, name="wbi", max_age_s=WBI_MAX_AGE_S
        )
        self.device = SharedCredential(
            context.redis,
            keys.device,
            keys.lock("device"),
            keys.stats,
            self._fetch_device,
            name="device",
            max_age_s=DEVICE_MAX_AGE_S,
        )

    def cookie(self, device: dict[str, str]) -> str:
        """The Cookie header: the crawler's device cookie merged with the user's (theirs win)."""
        # Every request asks; the device cookie changes about weekly. The last
        # answer is kept with a copy of what it was built from (equal dicts of
        # two or three short strings compare faster than the header is built).
        if device == self._cookie_device:
            return self._cookie
        merged = dict(device)
        if self.login_allowed:
            merged.update(self.user)
        self._cookie = "; ".join(f"{k}={v}" for k, v in merged.items())
        self._cookie_device = dict(device)
        return self._cookie

    async def _get_json(self, path: str, cookie: str) -> dict[str, object]:
        from workers.fetch import fetch  # noqa: PLC0415 - see the imports

        headers = {"Cookie": cookie} if cookie else {}
        body = await fetch(self.context.session, f"{self.base_url}{path}", headers)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadPayload(f"{path}: invalid JSON", reason="bad_json") from None
        if not isinstance(payload, dict):
            raise BadPayload(f"{path}: JSON body is not an object", reason="bad_json")
        code = payload.get("code")
        if code not in (0, -101):  # -101: not logged in, which nav answers with its keys anyway
            raise_for_code(code, str(payload.get("message", "")))
        return payload

    async def _fetch_wbi(self) -> dict[str, str]:
        device, _ = await self.device.get()
        img, sub = keys_from_nav(await self._get_json("/x/web-interface/nav", self.cookie(device)))
        return {"img_key": img, "sub_key": sub}

    async def _fetch_device(self) -> dict[str, str]:
        try:
            payload = await self._get_json("/x/frontend/finger/spi", "")
        except PageError as exc:
            spi_error: PageError = exc
        else:
            data = payload.get("data")
            if isinstance(data, dict) and data.get("b_3"):
                found = {"buvid3": str(data["b_3"])}
                if data.get("b_4"):
                    found["buvid4"] = str(data["b_4"])
                return found
            spi_error = BadPayload("/x/frontend/finger/spi without data.b_3", reason="no_device")
        try:
            return await self._device_from_home()
        except PageError:
            raise spi_error from None  # the first failure says more (a 5xx, a ban) than the fallback's

    async def _device_from_home(self) -> dict[str, str]:
        import aiohttp  # noqa: PLC0415 - see the imports

        try:
            async with self.context.session.get(f"{self.base_url}/", allow_redirects=False) as response:
                await response.read()
                jar = {name: morsel.value for name, morsel in response.cookies.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionFailed(f"home page: {type(exc).__name__}", reason="connection") from None
        if "buvid3" not in jar:
            raise BadPayload("no buvid3 from /x/frontend/finger/spi nor the home page", reason="no_device")
        return {k: v for k, v in jar.items() if k in ("buvid3", "b_nut", "buvid4")}
