"""The Redis bus's Lua scripts: publish (ids, the one stored copy, per-channel references), late indexing, the
resume read, and the subscriber's snapshot and catch-up pages.

The keys (all under the bus prefix):

    events          Stream: every message once (`p` = the previous event's id, `t` = the tail); trimmed by age and
                    count. Its XADD is the one id generator, so ids are totally ordered across publishers.
    meta            Hash: `origin` (nothing before it is known: a Redis that lost its data gets a new one), `last`
                    (the newest id issued), `floor` (the newest id trimmed from `events`).
    ix:<channel>    Sorted set of the ids addressed to a channel (score = the id's milliseconds): references, not
                    copies. At most `max_events` members; expires `max_age` after its last write.
    ixd:<channel>   The newest id trimmed from `ix:<channel>` (a resume from before it has a gap); same expiry.
    pending         Sorted set of events whose audience is still being indexed (published, live, but some
                    `ix:` keys not written yet): a resume reads them from `events` and checks their audience.

Cost of one event: its tail once in `events` (plus ~30 bytes), and per audience channel one sorted-set member
(~30 bytes; ~250 bytes with the key when the channel had no history yet). Never the message per channel.

A publish call writes at most a bounded number of channels (the caller splits), so no call holds Redis for
long; each event's id, its stored copy and its PUBLISH happen in one call, so pub/sub order equals id order.
Keys are computed inside the scripts: a single Redis (or a primary with replicas), not Cluster.
"""

from __future__ import annotations

_PRELUDE = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function newer(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am > bm or (am == bm and as > bs)
end
-- reference `id` from the channel's history; past max_events drop the oldest and remember the newest dropped
local function index(ixprefix, dprefix, max_events, ttl, channel, id, ms)
  local key = ixprefix .. channel
  redis.call('ZADD', key, ms, id)
  local excess = redis.call('ZCARD', key) - max_events
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', key, excess)
    local dkey = dprefix .. channel
    local dropped = redis.call('GET', dkey) or '0-0'
    for j = 1, #popped, 2 do
      if newer(popped[j], dropped) then dropped = popped[j] end
    end
    redis.call('SET', dkey, dropped, 'PX', ttl)
  end
  redis.call('PEXPIRE', key, ttl)
end
"""

PUBLISH = (
    _PRELUDE
    + """
-- KEYS: events, bus channel, meta, pending
-- ARGV: ixprefix, dprefix, max_events, ttl_ms, log_length, then per event: tail, partial (1|0), k, k channels
local events, bus, meta, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ixprefix, dprefix = ARGV[1], ARGV[2]
local max_events, ttl, log_length = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local previous = redis.call('HGET', meta, 'last') or '0-0'
local ids, i, ms = {}, 6, 0
while i <= #ARGV do
  local tail, partial, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  -- XADD '*' is monotonic even if the clock steps back; p lets a reader tell "trimmed" from "never written"
  local id = redis.call('XADD', events, '*', 'p', previous, 't', tail)
  ms = parse(id)
  for j = i + 3, i + 2 + k do
    index(ixprefix, dprefix, max_events, ttl, ARGV[j], id, ms)
  end
  if partial == '1' then
    redis.call('ZADD', pending, ms, id)
  end
  redis.call('PUBLISH', bus, id .. '\\n' .. tail)
  ids[#ids + 1] = id
  previous = id
  i = i + 3 + k
end
redis.call('HSET', meta, 'last', previous)
redis.call('HSETNX', meta, 'origin', ids[1])
-- bounded by age and by count; the newest id trimmed is the floor below which catching up is impossible
local trimmed = redis.call('XTRIM', events, 'MAXLEN', '~', log_length)
trimmed = trimmed + redis.call('XTRIM', events, 'MINID', '~', (ms - ttl) .. '-0')
if trimmed > 0 then
  local first = redis.call('XRANGE', events, '-', '+', 'COUNT', 1)[1]
  redis.call('HSET', meta, 'floor', first and first[2][2] or previous)
end
redis.call('ZREMRANGEBYSCORE', pending, '-inf', '(' .. (ms - ttl))
return ids
"""
)

INDEX = (
    _PRELUDE
    + """
-- KEYS: pending.  ARGV: ixprefix, dprefix, max_events, ttl_ms, id, done (1|0), channels...
-- The rest of a large audience, after the event went out: references may land after newer events' (the sorted
-- sets order by id, not by arrival); until `done`, resumes find the event through `pending`.
local ms = parse(ARGV[5])
for j = 7, #ARGV do
  index(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[j], ARGV[5], ms)
end
if ARGV[6] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[5])
end
return 1
"""
)

HISTORY = """
-- KEYS: meta, pending.  ARGV: start_ms, ixprefix, dprefix, channels...
-- One atomic read: Redis' time, what the history knows, events still being indexed, and per channel the newest
-- id trimmed and the ids since start_ms. The messages themselves are fetched afterwards, by id.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('HMGET', KEYS[1], 'origin', 'last')
local out = {now, known[1], known[2], redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')}
for i = 4, #ARGV do
  out[#out + 1] = redis.call('GET', ARGV[3] .. ARGV[i])
  out[#out + 1] = redis.call('ZRANGEBYSCORE', ARGV[2] .. ARGV[i], ARGV[1], '+inf')
end
return out
"""

SNAPSHOT = """
-- KEYS: meta.  Where the history stands for a subscriber that just (re)subscribed: origin (created now if this
-- Redis has none: history starts here), the newest id issued and the floor of the events stream.
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[1], 'origin', t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. '-0')
return redis.call('HMGET', KEYS[1], 'origin', 'last', 'floor')
"""

PAGE = """
-- KEYS: events, meta.  ARGV: after (exclusive), count.  A page of catch-up with the floor read in the same
-- atomic step, so a trim racing the catch-up is seen rather than skipped over. The page comes back as one string
-- of `<length>:<message>` records (message = `<id>\\n<tail>`; `t` follows `p` in each entry): parsing a reply
-- costs the client far more per element than splitting one string does.
local parts = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])) do
  local message = entry[1] .. '\\n' .. entry[2][4]
  parts[#parts + 1] = #message .. ':' .. message
end
return {redis.call('HGET', KEYS[2], 'floor') or '0-0', table.concat(parts)}
"""
