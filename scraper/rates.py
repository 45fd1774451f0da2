"""Pages and comments per second over the last minute, in a ring of fixed size.

The ring is one small hash, ``<prefix>:{target}:rate``, with at most
``RING_SLOTS`` fields. Field ``<second % RING_SLOTS>`` holds
``"<second>:<pages>:<comments>"``: the second the slot counts and its two
totals. A write to a slot that still holds an older second resets it first,
inside one Lua script, so two settles racing on a reused slot cannot mix the
old second's counts into the new one. The hash never grows with the length of
a crawl (64 fields stay in Redis's compact listpack encoding, about 1 KB), and
a reader fetches those 64 fields whatever ran before: O(1).

A worker whose clock lags by more than the ring's span cannot overwrite a newer
second: its late write is dropped (it would fall outside every window anyway).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from scraper.keys import TargetKeys

RING_SLOTS = 64  # > the longest window + the second still filling
RATE_WINDOWS_S = (10, 60)
# Readers ask for these fields by name (HMGET), never for the whole hash: a
# reader stays O(1) even next to fields an older version left in the key.
SLOT_FIELDS = [str(slot) for slot in range(RING_SLOTS)]

# KEYS: rate. ARGV: now_s, pages, comments, slots.
_BUMP_LUA = """
local now = tonumber(ARGV[1])
local slot = tostring(now % tonumber(ARGV[4]))
local pages, comments = tonumber(ARGV[2]), tonumber(ARGV[3])
local held = redis.call('HGET', KEYS[1], slot)
if held then
  local second, p, c = string.match(held, '^(%d+):(%d+):(%d+)$')
  second = tonumber(second)
  if second == now then
    pages, comments = pages + tonumber(p), comments + tonumber(c)
  elseif second and second > now then
    return 0
  end
end
redis.call('HSET', KEYS[1], slot, now .. ':' .. pages .. ':' .. comments)
return 1
"""


def bump(pipe: Any, keys: TargetKeys, now_s: int, pages: int, comments: int) -> None:
    """Queue the ring update on ``pipe`` (a MULTI pipeline: it lands with the settle)."""
    if pages or comments:
        pipe.eval(_BUMP_LUA, 1, keys.rate, int(now_s), int(pages), int(comments), RING_SLOTS)


def parse_ring(values: list[Any]) -> dict[int, tuple[int, int]]:
    """``{second: (pages, comments)}`` from the ring's slot values (bytes, str or None)."""
    seconds: dict[int, tuple[int, int]] = {}
    for value in values:
        if value is None:
            continue  # a slot never written
        text = value.decode() if isinstance(value, bytes) else str(value)
        second, _, rest = text.partition(":")
        pages, _, comments = rest.partition(":")
        try:
            seconds[int(second)] = (int(pages), int(comments))
        except ValueError:
            continue  # a foreign or legacy field: not ours to count
    return seconds


def window_rates(seconds: dict[int, tuple[int, int]], now_s: int) -> dict[str, float]:
    """pages/s and comments/s over each window.

    The current second is still filling, so a window covers the N whole
    seconds before it."""
    result: dict[str, float] = {}
    for window in RATE_WINDOWS_S:
        pages = comments = 0
        for second, (p, c) in seconds.items():
            if now_s - window <= second < now_s:
                pages += p
                comments += c
        result[f"pages_per_s_{window}s"] = round(pages / window, 2)
        result[f"comments_per_s_{window}s"] = round(comments / window, 2)
    return result


async def read_rates(client: aioredis.Redis, keys: TargetKeys, now_s: int) -> dict[str, float]:
    """The rates of one target: one HMGET of the ``RING_SLOTS`` slot fields."""
    return window_rates(parse_ring(await client.hmget(keys.rate, SLOT_FIELDS)), now_s)
