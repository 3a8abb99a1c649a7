"""Debounce windows on Redis, shared by every process: each offer and each claim is one Lua script.

    {prefix}:debounce:w:{key}     hash  k (the key), s (window start), d (deadline), w, mw (ms), st (held
                                        state, see debounce_merge.py; absent when nothing is held);
                                        expires max_wait + key_slack after its last change
    {prefix}:debounce:due         zset  window hash -> deadline, only while it holds events
    {prefix}:debounce:inflight    zset  claim token -> lease expiry
    {prefix}:debounce:claims      hash  claim token -> {"k", "st", "a" (attempt), "at" (claimed)}

`offer` reads, decides and writes in one script, so a burst from many processes at once still opens one
window with one leading edge. `claim_due` moves due windows to claims and reopens them in one script, so
exactly one caller gets each trailing edge, and a window opened by a process that died is closed by whoever
claims next. The merge is done in Lua on values kept as JSON text (numbers never pass through Lua).

Cost: `offer` is one EVALSHA: HMGET + (leading: DEL, HSET, PEXPIRE | held: JSON decode/merge/encode of the
window's state, bounded by max_list_items x fields, HSET, ZADD, PEXPIRE). Deviation: `claim_due` names
window keys it found in the due set (not in KEYS), so this store needs a single Redis, not a Cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from ..errors import redis_errors
from .debounce import Closed, DebounceOptions, DebounceStore, Offer, log, to_ms, window_ms
from .debounce_merge import decode, encode_fields, single

# The Lua twin of debounce_merge.merge; the contract suite runs both on the same cases.
_MERGE = """
local function union(old, new, max)
  local seen, out = {}, {}
  for _, t in ipairs(old) do seen[t] = true; out[#out + 1] = t end
  for _, t in ipairs(new) do
    if not seen[t] then seen[t] = true; out[#out + 1] = t end
  end
  if #out <= max then return out, false end
  local cut = {}
  for i = #out - max + 1, #out do cut[#cut + 1] = out[i] end
  return cut, true
end

local function merge(st, inc, id, max_items, max_ids)
  for _, name in ipairs(inc.o) do
    local new, old = inc.f[name], st.f[name]
    if old == nil then st.o[#st.o + 1] = name end
    if new[1] == 'l' then
      local base = {}
      if old ~= nil and old[1] == 'l' then base = old[2] end
      local items, cut = union(base, new[2], max_items)
      st.f[name] = {'l', items}
      if cut then
        local known = false
        for _, t in ipairs(st.t) do if t == name then known = true end end
        if not known then st.t[#st.t + 1] = name end
      end
    elseif new[1] == 'b' and old ~= nil and old[1] == 'b' then
      st.f[name] = {'b', old[2] or new[2]}
    else
      st.f[name] = new
    end
  end
  st.i[#st.i + 1] = id
  while #st.i > max_ids do table.remove(st.i, 1) end
  st.n = st.n + 1
end
"""

# KEYS: window, due. ARGV: now, window, max_wait, event id, incoming fields (JSON), max items, max ids,
# key ttl (ms), key. Returns {1 | 0, deadline, merged state JSON | nil}.
_OFFER = (
    _MERGE
    + """
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 's', 'd', 'w', 'mw', 'st')
local d = tonumber(h[2])
if (not d) or now >= d then
  local out = false
  if h[5] then
    local st = cjson.decode(h[5])
    merge(st, cjson.decode(ARGV[5]), ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7]))
    out = cjson.encode(st)
    redis.call('ZREM', KEYS[2], KEYS[1])
  end
  local w = tonumber(ARGV[2])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'k', ARGV[9], 's', now, 'd', now + w, 'w', w, 'mw', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  return {1, now + w, out}
end
local st
if h[5] then st = cjson.decode(h[5]) else st = {o = {}, f = {}, i = {}, n = 0, t = {}} end
merge(st, cjson.decode(ARGV[5]), ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7]))
local nd = math.max(d, math.min(now + tonumber(h[3]), tonumber(h[1]) + tonumber(h[4])))
redis.call('HSET', KEYS[1], 'd', nd, 'st', cjson.encode(st))
redis.call('ZADD', KEYS[2], nd, KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {0, nd, false}
"""
)

# KEYS: due, inflight, claims. ARGV: now, limit, lease (ms), token prefix, key slack (ms), max attempts.
# Returns {{token, claim JSON, ...}, dropped}: expired leases first, then windows due to close.
_CLAIM = """
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out, dropped = {}, 0
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  local blob = redis.call('HGET', KEYS[3], token)
  local c = blob and cjson.decode(blob)
  if c and c.a < tonumber(ARGV[6]) then
    c.a = c.a + 1
    blob = cjson.encode(c)
    redis.call('HSET', KEYS[3], token, blob)
    redis.call('ZADD', KEYS[2], now + lease, token)
    out[#out + 1] = token; out[#out + 1] = blob
  else
    if c then dropped = dropped + 1 end
    redis.call('HDEL', KEYS[3], token)
    redis.call('ZREM', KEYS[2], token)
  end
end
local room = limit - #out / 2
if room < 1 then return {out, dropped} end
for i, wkey in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, room)) do
  redis.call('ZREM', KEYS[1], wkey)
  local h = redis.call('HMGET', wkey, 'k', 'd', 'w', 'mw', 'st')
  if h[5] and tonumber(h[2]) > now then
    redis.call('ZADD', KEYS[1], h[2], wkey)
  elseif h[5] then
    local token = ARGV[4] .. i
    local blob = cjson.encode({k = h[1], st = h[5], a = 1, at = now})
    redis.call('HSET', KEYS[3], token, blob)
    redis.call('ZADD', KEYS[2], now + lease, token)
    redis.call('HDEL', wkey, 'st')
    redis.call('HSET', wkey, 's', now, 'd', now + tonumber(h[3]))
    redis.call('PEXPIRE', wkey, tonumber(h[4]) + tonumber(ARGV[5]))
    out[#out + 1] = token; out[#out + 1] = blob
  end
end
return {out, dropped}
"""


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisDebounce(DebounceStore):
    """Windows shared by every process on one Redis; see the module docstring for keys and costs."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tidings",
        options: DebounceOptions | None = None,
        client: Redis | None = None,
    ) -> None:
        self._options = options or DebounceOptions()
        self._clock = self._options.clock
        self._owns_client = client is None
        self._redis: Redis = client if client is not None else Redis.from_url(url, decode_responses=False)
        self.window_prefix = f"{prefix}:debounce:w:"
        self.due_key = f"{prefix}:debounce:due"
        self.inflight_key = f"{prefix}:debounce:inflight"
        self.claims_key = f"{prefix}:debounce:claims"
        self._offer = self._redis.register_script(_OFFER)
        self._claim = self._redis.register_script(_CLAIM)
        self._lease_ms = to_ms(self._options.lease)
        self._slack_ms = to_ms(self._options.key_slack)

    def __repr__(self) -> str:
        return f"<RedisDebounce {self.window_prefix!r}>"

    async def offer(
        self,
        key: str,
        event_id: str,
        data: Mapping[str, Any],
        *,
        window: float,
        max_wait: float | None = None,
    ) -> Offer:
        w, mw = window_ms(window, max_wait)
        opts = self._options
        incoming = json.dumps(encode_fields(data), separators=(",", ":"), ensure_ascii=False)
        with redis_errors("debounce unavailable"):
            lead, deadline, state = await self._offer(
                keys=[self.window_prefix + key, self.due_key],
                args=[
                    to_ms(self._clock()),
                    w,
                    mw,
                    event_id,
                    incoming,
                    opts.max_list_items,
                    opts.max_ids,
                    mw + self._slack_ms,
                    key,
                ],
            )
        if not lead:
            return Offer(False, None, int(deadline) / 1000)
        merged = decode(json.loads(state)) if state is not None else single(event_id, data)
        return Offer(True, merged, int(deadline) / 1000)

    async def claim_due(self, now: float | None = None, limit: int = 100) -> list[Closed]:
        at = to_ms(self._clock() if now is None else now)
        with redis_errors("debounce unavailable"):
            flat, dropped = await self._claim(
                keys=[self.due_key, self.inflight_key, self.claims_key],
                args=[
                    at,
                    limit,
                    self._lease_ms,
                    f"{os.urandom(8).hex()}:",
                    self._slack_ms,
                    self._options.max_attempts,
                ],
            )
        if dropped:
            log.error(
                "debounce: %d trailing edge(s) dropped after %d attempts", dropped, self._options.max_attempts
            )
        out = []
        for i in range(0, len(flat), 2):
            claim = json.loads(flat[i + 1])
            merged = decode(json.loads(claim["st"]))
            out.append(Closed(claim["k"], merged, int(claim["at"]) / 1000, _s(flat[i]), int(claim["a"])))
        return out

    async def ack(self, closed: Closed) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(self.claims_key, closed.token)
        pipe.zrem(self.inflight_key, closed.token)
        with redis_errors("debounce unavailable"):
            await pipe.execute()

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
