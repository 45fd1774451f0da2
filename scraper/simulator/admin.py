"""``/_sim/*``: the simulator's own endpoints, never faulted, limited or counted.

* ``GET /_sim/stats``: requests, by HTTP status, by answer code (``by_code``:
  "0", "-403", "-352", "-101", "http 412", "fault truncate", ...), per endpoint
  (``by_endpoint``: path -> {"requests": n, code: n}), faults, bans, cache;
* ``POST /_sim/reset``: zero the stats, forget fault history, bans and manual
  key rotations (comments added stay);
* ``GET /_sim/keys``: the current WBI ``img_key`` / ``sub_key`` and epoch;
* ``POST /_sim/rotate``: move to the next WBI keys now;
* ``POST /_sim/grow``: add comments / change likes; body
  ``{"videos": {"<aid>": {"roots": n, "replies": {"<root rpid>": k}}},
  "likes": {"<rpid>": like}}``, answer ``{"ok": true, "added": {"videos":
  {"<aid>": {"roots": [rpid...], "replies": {"<root>": [rpid...]}}}, "likes":
  {...}, "rpids": [every added rpid]}}``; a bad request answers 400 and
  changes nothing. Replies go to roots that exist before the call (a root
  added in the same call takes replies in a second call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from scraper.simulator.wire import JSON, NOT_FOUND

if TYPE_CHECKING:
    from scraper.simulator.app import Simulator


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


class Admin:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._routes = {
            "/_sim/stats": ("GET", self.stats),
            "/_sim/keys": ("GET", self.keys),
            "/_sim/reset": ("POST", self.reset),
            "/_sim/rotate": ("POST", self.rotate),
            "/_sim/grow": ("POST", self.grow),
        }

    async def handle(self, request: web.BaseRequest) -> web.Response:
        route = self._routes.get(request.path)
        if route is None:
            return web.Response(status=404, body=NOT_FOUND, content_type=JSON)
        method, handler = route
        if request.method != method:
            return web.Response(status=405, headers={"Allow": method})
        return await handler(request)

    async def stats(self, request: web.BaseRequest) -> web.Response:
        return _json(self.simulator.stats_dict())

    async def keys(self, request: web.BaseRequest) -> web.Response:
        keys = self.simulator.api.keys
        img, sub = keys.current()
        return _json({"img_key": img, "sub_key": sub, "epoch": keys.epoch(), "rotate_s": keys.rotate_s})

    async def reset(self, request: web.BaseRequest) -> web.Response:
        self.simulator.reset()
        self.simulator.api.keys.reset()
        return _json({"ok": True})

    async def rotate(self, request: web.BaseRequest) -> web.Response:
        keys = self.simulator.api.keys
        img, sub = keys.rotate()
        return _json({"ok": True, "img_key": img, "sub_key": sub, "epoch": keys.epoch()})

    async def grow(self, request: web.BaseRequest) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            videos = {int(aid): spec for aid, spec in (body.get("videos") or {}).items()}
            likes = {int(rpid): like for rpid, like in (body.get("likes") or {}).items()}
            grown = self.simulator.corpus.grow(videos, likes)
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)
        return _json({"ok": True, "added": grown.as_json()})
