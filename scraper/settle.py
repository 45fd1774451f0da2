"""What one finished page changes in Redis, and the script that applies it at most once.

A consumer turns every claimed stream entry into one ``Outcome`` (done with
follow-ups and records, retried, released, dead-lettered or final). A batch of
outcomes is applied by ``SETTLE_LUA`` in one EVAL: for each entry it XACKs
first and applies the rest only when XACK answered 1, then XDELs it. A settle
retried after an ambiguous reply, or a page settled a second time after a
takeover, therefore changes nothing: follow-ups are enqueued exactly once, by
the settle that acknowledged their parent, so no fingerprint set is needed.

The same script keeps the completeness ledger (``scraper.ledger``) of each
video in step with its pages: open tasks per video and per thread, comments
fetched against what the service announced, the first reason a video cannot be
complete, and the video's status once its last open page settles.

Refresh crawls (``scraper.refresh``) ride on the same entries. Besides the
threads a page opens, ``LedgerDelta.threads`` carries two kinds of notes (they
travel in ``threads`` because that is the list a chain fetched inline merges):

- ``(0, known, top)``: a page note: how many of its records were already known
  before this refresh (rpid <= the task's watermark; they refresh the copy but
  are not new) and the newest rpid on the page (the next watermark);
- ``(root, rcount, -page_size)``: an old root seen by a refresh: the script
  compares ``rcount`` with the one stored when the thread was last fetched
  (``<prefix>:{T}:rcounts:<aid>``, 12 packed bytes per thread, the KEYS entry
  right after the video's ledger) and enqueues
  only the thread pages past the known replies when it grew (threads are
  oldest first, so new replies are at the end).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from scraper.tasks import Task


@dataclass(slots=True)
class LedgerDelta:
    """What a page tells the video's ledger (see scraper.ledger for the fields)."""

    expected: int | None = None  # comments the service announces (all_count / acount)
    # (root, rcount, pages) opened here; also page notes and rechecks (see page_note, recheck)
    threads: list[tuple[int, int, int]] = field(default_factory=list)
    status: str | None = None  # "closed" / "deleted": the video's final status
    reason: tuple[str, str] | None = None  # (code, detail): the video cannot be complete
    short_code: str | None = None  # root chain ended: the reason code if fetched < expected
    thread_code: str = "thread_short"  # reason code if this page's thread ends shorter than its rcount
    thread_gone: bool = False  # the thread's root was deleted: no shortfall to report
    # auto paging: a legacy page the service refused (-400) and the cursor chain that takes
    # the video over past it. The first refusal of a video enqueues the chain; each lowers
    # the ledger's ``depth`` (legacy pages that answered) to its page - 1.
    refused_page: int = 0
    tail: Task | None = None
    # auto paging: the roots a legacy page says the video lists now. When it differs
    # from page 1's, comments arrived or went mid-crawl and page numbers shifted (a
    # root may have slipped between two pages): the script then stops counting the
    # legacy pages and enqueues a cursor chain over the whole list that counts instead.
    listed: int | None = None


def page_note(known: int, top: int) -> tuple[int, int, int]:
    """A page's records already known before this refresh, and its newest rpid."""
    return (0, known, top)


def tail_note(records: int, page: int) -> tuple[int, int, int]:
    """A tail chain's page: its records are known if ``page`` is within the legacy depth."""
    return (-1, records, page)


def recheck(root: int, rcount: int, page_size: int) -> tuple[int, int, int]:
    """An old root seen again: fetch its thread's new pages if ``rcount`` grew."""
    return (root, rcount, -page_size)


@dataclass(slots=True)
class Outcome:
    """One claimed entry's fate. Exactly one of done / retry / release / dead / final."""

    entry_id: bytes
    task: Task
    followups: list[Task] = field(default_factory=list)
    records: int = 0
    retry_due_ms: int | None = None  # with ``retry_task``
    retry_task: Task | None = None
    release: bool = False  # handed back untouched (drain)
    dead: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    counters: Counter[str] = field(default_factory=Counter)
    ledger: LedgerDelta = field(default_factory=LedgerDelta)

    @property
    def done(self) -> bool:
        """Settled for good: the page no longer counts as open in its video's ledger."""
        return self.retry_task is None and not self.release

    def encode(self, ledger_index: int) -> bytes:
        delta = self.ledger
        data: dict[str, Any] = {"id": self.entry_id.decode(), "v": ledger_index, "r": self.task.root}
        if self.followups:
            data["fu"] = [t.encode().decode() for t in self.followups]
        if self.records:
            data["n"] = self.records
        if self.retry_task is not None:
            data["retry"] = [self.retry_task.encode().decode(), self.retry_due_ms or 0]
        if self.release:
            data["release"] = self.task.encode().decode()
        if self.dead is not None:
            data["dead"] = _flat(self.dead)
        if self.final is not None:
            data["final"] = _flat(self.final)
        if self.counters:
            data["c"] = dict(self.counters)
        data["d"] = 1 if self.done else 0
        if delta.expected is not None:
            data["e"] = delta.expected
        if delta.threads:
            data["th"] = [list(t) for t in delta.threads]
        if delta.status:
            data["s"] = delta.status
        if delta.reason:
            data["why"] = list(delta.reason)
        if delta.short_code:
            data["end"] = delta.short_code
        data["tc"] = delta.thread_code
        if delta.thread_gone:
            data["tg"] = 1
        if delta.tail is not None:
            data["tail"] = [delta.refused_page, delta.tail.encode().decode()]
        if delta.listed is not None:
            data["ls"] = delta.listed
        if any(note[0] == -1 for note in delta.threads):
            data["tl"] = 1  # tail pages: the script reads whether the list moved
        return orjson.dumps(data)


def _flat(record: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in record.items():
        out += [key, value if isinstance(value, str) else str(value)]
    return out


# Final records ("not available": closed, deleted, depth cap) kept per video;
# the final:<kind> counters stay exact past it (issue 13: bounded per video).
FINAL_RECORDS_PER_VIDEO = 20

# KEYS: tasks, delayed, dead, final, stats, then per video its ledger hash and its rcounts string.
# ARGV: group, task field, complete ratio, then one JSON outcome per entry.
# Returns {entries applied, pages done, comments} of this call.
SETTLE_LUA = (
    """
local FINAL_PER_VIDEO = """
    + str(FINAL_RECORDS_PER_VIDEO)
    + """
local tasks, delayed, dead, final, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, tfield, ratio = ARGV[1], ARGV[2], tonumber(ARGV[3])
local applied, pages, comments = 0, 0, 0
local RC = '<i8I4'  -- a thread's root rpid and the rcount its pages were fetched for: 12 bytes
local known_rc = {}  -- rcounts key -> {root -> largest stored rcount}, read once per call

local rc_of = {}  -- ledger key -> its video's rcounts key (the KEYS entry after it)

local function rcounts(L)
  local R = rc_of[L]
  if not known_rc[R] then
    local map, s = {}, redis.call('GET', R)
    if s then
      for i = 1, #s - 11, 12 do
        local root, c = struct.unpack(RC, s, i)
        if not map[root] or c > map[root] then map[root] = c end
      end
    end
    known_rc[R] = map
  end
  return R, known_rc[R]
end

local function remember(L, root, rcount)
  local R, map = rcounts(L)
  redis.call('APPEND', R, struct.pack(RC, root, rcount))
  map[root] = rcount
end

local function recheck(L, root, rcount, ps)
  local _, map = rcounts(L)
  local known = map[root] or 0
  if rcount <= known then return 0 end
  local first, last = math.floor(known / ps) + 1, math.ceil(rcount / ps)
  local bvid = redis.call('HGET', L, 'bvid') or ''
  local since = redis.call('HGET', L, 'since') or '0'
  local oid, r = L:match(':video:(%d+)$'), string.format('%d', root)
  for p = first, last do
    redis.call('XADD', tasks, '*', tfield, string.format(
      '{"kind":"reply","oid":%s,"page":%d,"root":%s,"bvid":"%s","since":%s}', oid, p, r, bvid, since))
  end
  local t = 't:' .. r
  redis.call('HSET', L, t .. ':e', rcount)
  redis.call('HSETNX', L, t .. ':g', (first - 1) * ps)  -- the replies before page `first` are known
  redis.call('HINCRBY', L, t .. ':o', last - first + 1)
  redis.call('HINCRBY', stats, 'pages_known', last - first + 1)
  remember(L, root, rcount)
  return last - first + 1
end

local function shift(L)
  -- the list moved under the legacy pages: what they counted (and the tail chain past
  -- them) no longer proves anything; a cursor chain over the whole list counts instead
  redis.call('HSET', L, 'shift', 1)
  local counted = tonumber(redis.call('HGET', L, 'lf') or '0') + tonumber(redis.call('HGET', L, 'tf') or '0')
  if counted > 0 then redis.call('HINCRBY', L, 'fetched', -counted) end
  local oid, bvid = L:match(':video:(%d+)$'), redis.call('HGET', L, 'bvid') or ''
  redis.call('XADD', tasks, '*', tfield, string.format(
    '{"kind":"cursor","oid":%s,"page":1,"bvid":"%s","tail":-1}', oid, bvid))
  redis.call('HINCRBY', stats, 'pages_known', 1)
  return 1
end

local function finish(L)
  local f = redis.call('HGET', L, 'final')
  if f then
    redis.call('HSET', L, 'status', f)
  elseif redis.call('HEXISTS', L, 'reason') == 1 then
    redis.call('HSET', L, 'status', 'incomplete')
  else
    local e = tonumber(redis.call('HGET', L, 'expected') or '-1')
    local n = tonumber(redis.call('HGET', L, 'fetched') or '0')
    local slack = tonumber(redis.call('HGET', L, 'slack') or math.floor(e * (1 - ratio)))
    if e >= 0 and n < e - slack then
      redis.call('HSET', L, 'status', 'incomplete', 'reason', redis.call('HGET', L, 'end') or 'short')
    else
      redis.call('HSET', L, 'status', 'complete')
      -- only a complete crawl moves the watermark: a refresh that fell short starts again from the old one
      -- with what was known at it: a refresh that falls short starts again from here, counting afresh
      local top = redis.call('HGET', L, 'top')
      if top then redis.call('HSET', L, 'wm', top, 'wm_n', n, 'wm_gap', math.max(e - n, 0)) end
    end
  end
  if redis.call('HDEL', L, 'rf') == 1 then redis.call('HSET', L, 'refreshed_at', redis.call('TIME')[1]) end
  redis.call('HDEL', L, 'since', 'slack')
end

local function ledger(L, o)
  if o.e then
    -- replies announced under roots since deleted are kept out of a refresh's expectation too
    redis.call('HSETNX', L, 'expected', o.e - tonumber(redis.call('HGET', L, 'gone') or '0'))
  end
  local n, known, enq, past = o.n or 0, 0, 0, 0
  -- only auto paging's legacy and tail pages ask whether the list moved (one read, not one per page)
  local shifted = false
  if o.ls or o.tl then shifted = redis.call('HEXISTS', L, 'shift') == 1 end
  if o.tail then
    -- auto paging: the legacy pages end at the lowest refused page; the first refusal hands
    -- the video to a cursor chain (once), which counts its pages up to there as known
    local depth = o.tail[1] - 1
    if redis.call('HSETNX', L, 'depth', depth) == 1 then
      redis.call('XADD', tasks, '*', tfield, o.tail[2])
      redis.call('HINCRBY', stats, 'pages_known', 1)
      enq = enq + 1
    elseif depth < tonumber(redis.call('HGET', L, 'depth')) then
      redis.call('HSET', L, 'depth', depth)
    end
  end
  if o.th then
    for _, t in ipairs(o.th) do
      if t[1] == -1 then
        if shifted or t[3] <= tonumber(redis.call('HGET', L, 'depth') or '0') then
          known = known + t[2]
        else
          past = past + t[2]
        end
      elseif t[1] == 0 then
        known = known + t[2]
        if t[3] > tonumber(redis.call('HGET', L, 'top') or '0') then
          redis.call('HSET', L, 'top', string.format('%d', t[3]))
        end
      elseif t[3] < 0 then
        enq = enq + recheck(L, t[1], t[2], -t[3])
      else
        local p = 't:' .. string.format('%d', t[1])
        redis.call('HSET', L, p .. ':e', t[2])
        redis.call('HINCRBY', L, p .. ':o', t[3])
        remember(L, t[1], t[2])
      end
    end
  end
  local add = n - known
  if o.ls then
    local first = redis.call('HGET', L, 'rc0')
    if shifted then
      add = 0
    elseif first and tonumber(first) ~= o.ls then
      enq = enq + shift(L)
      add = 0
    else
      if not first then redis.call('HSET', L, 'rc0', o.ls) end
      redis.call('HINCRBY', L, 'lf', add)
    end
  end
  if past > 0 then redis.call('HINCRBY', L, 'tf', past) end
  if add > 0 then
    redis.call('HINCRBY', L, 'fetched', add)
    if redis.call('HEXISTS', L, 'new') == 1 then redis.call('HINCRBY', L, 'new', add) end
  end
  if o.s then redis.call('HSET', L, 'final', o.s) end
  if o.why and redis.call('HEXISTS', L, 'reason') == 0 then
    redis.call('HSET', L, 'reason', o.why[1], 'detail', o.why[2])
  end
  if o['end'] then redis.call('HSET', L, 'end', o['end']) end
  local fu = (o.fu and #o.fu or 0) + enq
  if o.r ~= 0 then
    local p = 't:' .. string.format('%d', o.r)
    if n > 0 then redis.call('HINCRBY', L, p .. ':g', n) end
    if o.d == 1 and redis.call('HINCRBY', L, p .. ':o', -1) <= 0 then
      local e = tonumber(redis.call('HGET', L, p .. ':e') or '0')
      local g = tonumber(redis.call('HGET', L, p .. ':g') or '0')
      if o.tg then
        -- the root was deleted: its announced replies no longer exist anywhere
        if e > g and redis.call('HEXISTS', L, 'expected') == 1 then
          redis.call('HINCRBY', L, 'expected', g - e)
          redis.call('HINCRBY', L, 'gone', e - g)
        end
      elseif g < e - math.floor(e * (1 - ratio)) and redis.call('HEXISTS', L, 'reason') == 0 then
        redis.call('HSET', L, 'reason', o.tc, 'detail',
          string.format('thread %d: %d of %d replies', o.r, g, e))
      end
      redis.call('HDEL', L, p .. ':e', p .. ':g', p .. ':o')
    end
  end
  if redis.call('HINCRBY', L, 'open', fu - o.d) <= 0 then finish(L) end
end

for i = 4, #ARGV do
  local o = cjson.decode(ARGV[i])
  if redis.call('XACK', tasks, group, o.id) == 1 then
    applied = applied + 1
    if o.fu then
      for _, t in ipairs(o.fu) do redis.call('XADD', tasks, '*', tfield, t) end
      redis.call('HINCRBY', stats, 'pages_known', #o.fu)
    end
    if o.retry then redis.call('ZADD', delayed, o.retry[2], o.retry[1]) end
    if o.release then redis.call('XADD', tasks, '*', tfield, o.release) end
    if o.dead then redis.call('XADD', dead, '*', unpack(o.dead)) end
    if o.final then
      -- a few records per video say why; past the cap only the counter grows (bounded memory)
      if o.v == 0 or redis.call('HINCRBY', KEYS[o.v], 'nfinal', 1) <= FINAL_PER_VIDEO then
        redis.call('XADD', final, '*', unpack(o.final))
      else
        redis.call('HINCRBY', stats, 'final_records_dropped', 1)
      end
    end
    if o.c then
      for k, v in pairs(o.c) do redis.call('HINCRBY', stats, k, v) end
      pages = pages + (o.c.pages_done or 0)
      comments = comments + (o.c.comments or 0)
    end
    -- a page of a video nobody seeded (or reset meanwhile) keeps no ledger
    if o.v > 0 and redis.call('EXISTS', KEYS[o.v]) == 1 then
      rc_of[KEYS[o.v]] = KEYS[o.v + 1]
      ledger(KEYS[o.v], o)
    end
    redis.call('XDEL', tasks, o.id)
  end
end
return {applied, pages, comments}
"""
)

# KEYS: videos (zset), tasks, stats, then one ledger hash per video.
# ARGV: task field, then (position, oid, bvid, task payload) per video.
# A video whose ledger exists was seeded before: nothing is enqueued again.
SEED_LUA = """
local added = 0
for i = 2, #ARGV, 4 do
  local L = KEYS[3 + (i + 2) / 4]
  redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1])
  if redis.call('HSETNX', L, 'bvid', ARGV[i + 2]) == 1 then
    redis.call('HSET', L, 'open', 1, 'status', 'pending')
    redis.call('XADD', KEYS[2], '*', ARGV[1], ARGV[i + 3])
    added = added + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[3], 'pages_known', added) end
return added
"""
