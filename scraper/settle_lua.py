"""The Lua scripts that apply outcomes to Redis atomically (see scraper.settle for what they apply).

``SETTLE_LUA`` acknowledges a batch of entries and applies each one's outcome
and ledger delta at most once; ``SEED_LUA`` enqueues the first page of each
video that has no ledger yet. They live apart from the Python that builds their
arguments because they are a program of their own: one EVAL runs the script
over the whole batch, inside Redis, while every other client waits.

Cost: every ``redis.call`` costs the server more than the command itself, so
the settle script reads a video's counters once per call, sums them in Lua
and writes them back with one HSET per video, and sums the stats counters and
deletes the acknowledged entries once per call (issue 15: Redis CPU per page
fell by a quarter).
"""

from __future__ import annotations

# Final records ("not available": closed, deleted, depth cap) kept per video;
# the final:<kind> counters stay exact past it (issue 13: bounded per video).
FINAL_RECORDS_PER_VIDEO = 20

# KEYS: tasks, delayed, dead, final, stats, then per video its ledger hash and its rcounts string.
# ARGV: group, task field, complete ratio, then per entry one JSON outcome and its follow-ups.
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

-- Read once and written once per call, not once per page: each redis.call costs
-- the server more than the command itself (issue 15: Redis CPU per page).
local inc = {}  -- stats counters, summed over the call
local function bump(k, v) inc[k] = (inc[k] or 0) + v end
local settled = {}  -- acknowledged entries, deleted together at the end
local has_ledger, has_new, shifted_of = {}, {}, {}  -- ledger key -> field present
local rc0_of = {}  -- ledger key -> the roots page 1 listed (-1: not known yet)

local function is_shifted(L)
  if shifted_of[L] == nil then shifted_of[L] = redis.call('HEXISTS', L, 'shift') == 1 end
  return shifted_of[L]
end

-- The ledger's counters (open, fetched, lf, tf, new and the open threads' t:<root>:e/g/o)
-- change with nearly every page: they are read once, summed here, and written back
-- with one HSET per video (sync) before anything reads the hash directly and at the end.
local cnt, cnt_dirty = {}, {}  -- ledger key -> {field -> number}, {field -> true}
-- and 'top': the newest rpid seen (a refresh's next watermark)
local VIDEO_COUNTERS = {'open', 'fetched', 'lf', 'top'}

local function counter(L, f)
  local c = cnt[L]
  if not c then c = {}; cnt[L] = c end
  local v = c[f]
  if v == nil then
    v = tonumber(redis.call('HGET', L, f) or '0')
    c[f] = v
  end
  return v
end

local function load(L, fields)  -- several counters in one read
  local c = cnt[L]
  if not c then c = {}; cnt[L] = c end
  local missing = {}
  for _, f in ipairs(fields) do
    if c[f] == nil then missing[#missing + 1] = f end
  end
  if #missing > 0 then
    local values = redis.call('HMGET', L, unpack(missing))
    for k, f in ipairs(missing) do c[f] = tonumber(values[k] or '0') end
  end
end

local function put(L, f, v)
  local c = cnt[L]
  if not c then c = {}; cnt[L] = c end
  c[f] = v
  local d = cnt_dirty[L]
  if not d then d = {}; cnt_dirty[L] = d end
  d[f] = true
  return v
end

local function add(L, f, delta)
  return put(L, f, counter(L, f) + delta)
end

local function forget(L, fields)  -- deleted from the hash: nothing to write back
  for _, f in ipairs(fields) do
    if cnt[L] then cnt[L][f] = nil end
    if cnt_dirty[L] then cnt_dirty[L][f] = nil end
  end
end

local function sync(L)  -- write the video's counters; later reads go to the hash again
  local d = cnt_dirty[L]
  if d then
    local args = {}
    for f in pairs(d) do
      args[#args + 1] = f
      args[#args + 1] = string.format('%d', cnt[L][f])
    end
    if #args > 0 then redis.call('HSET', L, unpack(args)) end
  end
  cnt[L], cnt_dirty[L] = nil, nil
end

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
  -- appended, not read: only a refresh's recheck needs the map (parsing it here cost
  -- every settle that opens a thread a pass over all the video's threads)
  local R = rc_of[L]
  redis.call('APPEND', R, struct.pack(RC, root, rcount))
  if known_rc[R] then known_rc[R][root] = rcount end
end

local function recheck(L, root, rcount, ps)
  local _, map = rcounts(L)
  local known = map[root] or 0
  if rcount <= known then return 0 end
  sync(L)
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
  bump('pages_known', last - first + 1)
  remember(L, root, rcount)
  return last - first + 1
end

local function shift(L)
  -- the list moved under the legacy pages: what they counted (and the tail chain past
  -- them) no longer proves anything; a cursor chain over the whole list counts instead
  redis.call('HSET', L, 'shift', 1)
  shifted_of[L] = true
  local counted = counter(L, 'lf') + counter(L, 'tf')
  if counted > 0 then add(L, 'fetched', -counted) end
  local oid, bvid = L:match(':video:(%d+)$'), redis.call('HGET', L, 'bvid') or ''
  redis.call('XADD', tasks, '*', tfield, string.format(
    '{"kind":"cursor","oid":%s,"page":1,"bvid":"%s","tail":-1}', oid, bvid))
  bump('pages_known', 1)
  return 1
end

local function finish(L)
  sync(L)
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

local function thread_end(L, o, e, g)  -- a thread's last page settled: e announced, g fetched
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
end

local function ledger(L, o)
  if o.e then
    -- replies announced under roots since deleted are kept out of a refresh's expectation too
    redis.call('HSETNX', L, 'expected', o.e - tonumber(redis.call('HGET', L, 'gone') or '0'))
  end
  local n, known, enq, past = o.n or 0, 0, 0, 0
  if not (cnt[L] and cnt[L].open) then load(L, VIDEO_COUNTERS) end  -- once per video and sync
  -- only auto paging's legacy and tail pages ask whether the list moved (one read, not one per page)
  local shifted = false
  if o.ls or o.tl then shifted = is_shifted(L) end
  if o.tail then
    -- auto paging: the legacy pages end at the lowest refused page; the first refusal hands
    -- the video to a cursor chain (once), which counts its pages up to there as known
    local depth = o.tail[1] - 1
    if redis.call('HSETNX', L, 'depth', depth) == 1 then
      redis.call('XADD', tasks, '*', tfield, o.tail[2])
      bump('pages_known', 1)
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
        if t[3] > counter(L, 'top') then put(L, 'top', t[3]) end
      elseif t[3] < 0 then
        enq = enq + recheck(L, t[1], t[2], -t[3])
      elseif t[3] == 0 then
        remember(L, t[1], t[2])  -- a one-page thread: its page checks itself (o.te)
      else
        local p = 't:' .. string.format('%d', t[1])
        put(L, p .. ':e', t[2])
        add(L, p .. ':o', t[3])
        remember(L, t[1], t[2])
      end
    end
  end
  local n_add = n - known
  if o.ls then
    if rc0_of[L] == nil then rc0_of[L] = tonumber(redis.call('HGET', L, 'rc0') or '-1') end
    local first = rc0_of[L] >= 0 and rc0_of[L] or nil
    if shifted then
      n_add = 0
    elseif first and tonumber(first) ~= o.ls then
      enq = enq + shift(L)
      n_add = 0
    else
      if not first then
        redis.call('HSET', L, 'rc0', o.ls)
        rc0_of[L] = o.ls
      end
      add(L, 'lf', n_add)
    end
  end
  if past > 0 then add(L, 'tf', past) end
  if n_add > 0 then
    add(L, 'fetched', n_add)
    if has_new[L] == nil then has_new[L] = redis.call('HEXISTS', L, 'new') == 1 end
    if has_new[L] then add(L, 'new', n_add) end
  end
  if o.s then redis.call('HSET', L, 'final', o.s) end
  if o.why and redis.call('HEXISTS', L, 'reason') == 0 then
    redis.call('HSET', L, 'reason', o.why[1], 'detail', o.why[2])
  end
  if o['end'] then redis.call('HSET', L, 'end', o['end']) end
  local fu = o.fu + enq
  if o.te then
    -- the page of a one-page thread: the thread's whole check, without ledger fields
    if o.d == 1 then thread_end(L, o, o.te, n) end
  elseif o.r ~= 0 then
    local p = 't:' .. string.format('%d', o.r)
    load(L, {p .. ':e', p .. ':g', p .. ':o'})
    if n > 0 then add(L, p .. ':g', n) end
    if o.d == 1 and add(L, p .. ':o', -1) <= 0 then
      thread_end(L, o, counter(L, p .. ':e'), counter(L, p .. ':g'))
      redis.call('HDEL', L, p .. ':e', p .. ':g', p .. ':o')
      forget(L, {p .. ':e', p .. ':g', p .. ':o'})
    end
  end
  if add(L, 'open', fu - o.d) <= 0 then finish(L) end
end

-- ARGV from 4: per entry its outcome, then the outcome's ``fu`` follow-up tasks as they
-- are (stream payloads: no JSON inside JSON to unescape)
local i = 4
while i <= #ARGV do
  local o = cjson.decode(ARGV[i])
  local nfu = o.fu or 0
  if redis.call('XACK', tasks, group, o.id) == 1 then
    applied = applied + 1
    settled[#settled + 1] = o.id
    if nfu > 0 then
      for j = i + 1, i + nfu do redis.call('XADD', tasks, '*', tfield, ARGV[j]) end
      bump('pages_known', nfu)
    end
    if o.retry then redis.call('ZADD', delayed, o.retry[2], o.retry[1]) end
    if o.release then redis.call('XADD', tasks, '*', tfield, o.release) end
    if o.dead then redis.call('XADD', dead, '*', unpack(o.dead)) end
    if o.final then
      -- a few records per video say why; past the cap only the counter grows (bounded memory)
      if o.v == 0 or redis.call('HINCRBY', KEYS[o.v], 'nfinal', 1) <= FINAL_PER_VIDEO then
        redis.call('XADD', final, '*', unpack(o.final))
      else
        bump('final_records_dropped', 1)
      end
    end
    if o.c then
      for k, v in pairs(o.c) do bump(k, v) end
      pages = pages + (o.c.pages_done or 0)
      comments = comments + (o.c.comments or 0)
    end
    -- a page of a video nobody seeded (or reset meanwhile) keeps no ledger
    if o.v > 0 then
      local L = KEYS[o.v]
      if has_ledger[L] == nil then has_ledger[L] = redis.call('EXISTS', L) == 1 end
      if has_ledger[L] then
        rc_of[L] = KEYS[o.v + 1]
        o.fu = nfu
        ledger(L, o)
      end
    end
  end
  i = i + 1 + nfu
end
for L in pairs(cnt_dirty) do sync(L) end
for k, v in pairs(inc) do
  if v ~= 0 then redis.call('HINCRBY', stats, k, v) end
end
for first = 1, #settled, 500 do  -- unpack() has a stack limit
  redis.call('XDEL', tasks, unpack(settled, first, math.min(first + 499, #settled)))
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
