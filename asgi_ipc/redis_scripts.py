"""The server-side Lua scripts of the Redis layer: every change that touches several keys at once.

A script runs atomically on its server, so capacity checks, pops and counters can never be torn by
another client or by this one dying half-way. Times come from the caller (milliseconds since the
epoch, ``ARGV[1]``) so every script judges expiry by the same clock as the entry's deadline, which
the sender wrote. Entries are ``"<deadline ms> <sent ms> <channel> <payload>"``
(``redis_shards``); a script reads the deadline with ``^(%d+) ``.

Counters live in hashes: ``sent``, ``received``, ``expired``, ``full``, plus per-second windows
(``ssec``/``scur``/``sprev`` for sends, ``fsec``/``fcur``/``fprev`` for full refusals) read by the
same blending rule as the shared-memory store.
"""

from __future__ import annotations

__all__ = ["ENQUEUE", "POP", "SETTLE"]

_COMMON = """
local now = tonumber(ARGV[1])
local sec = math.floor(now / 1000)
local function bump_rate(key, f, n)
  local w = tonumber(redis.call('HGET', key, f .. 'sec') or '-1')
  if w ~= sec then
    local prev = 0
    if w == sec - 1 then prev = tonumber(redis.call('HGET', key, f .. 'cur') or '0') end
    redis.call('HSET', key, f .. 'sec', sec, f .. 'cur', 0, f .. 'prev', prev)
  end
  redis.call('HINCRBY', key, f .. 'cur', n)
end
local function expired(entry)
  return tonumber(string.match(entry, '^(%d+) ')) <= now
end
local function count(s, g, field, n)
  redis.call('HINCRBY', s, field, n)
  redis.call('HINCRBY', g, field, n)
end
-- Channels whose message expired unread, returned after a script's own result so the caller
-- can remove them from their groups (which may live on other servers).
local evicted, seen = {}, {}
local function drop_expired(s, g, entry)
  count(s, g, 'expired', 1)
  local name = string.match(entry, '^%d+ %d+ (%S+) ')
  if not seen[name] then
    seen[name] = true
    evicted[#evicted + 1] = name
  end
end
local function with_evicted(result)
  for _, name in ipairs(evicted) do result[#result + 1] = name end
  return result
end
"""

ENQUEUE = _COMMON + """
-- Append one message to each member queue that has room. A queue at capacity first drops its
-- expired heads, so they never hold capacity (only then: reading a head copies the whole entry).
-- KEYS: global stats, then (queue, channel stats) per member
-- ARGV: now, deadline, sent, payload, queue ttl, stats ttl, then (full name, capacity) per member
-- Returns {delivered, refused, evicted channel...}.
local g = KEYS[1]
local stamp = ARGV[2] .. ' ' .. ARGV[3] .. ' '
local payload = ARGV[4]
local qttl, sttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local delivered, refused = 0, 0
for i = 1, (#KEYS - 1) / 2 do
  local q, s = KEYS[2 * i], KEYS[2 * i + 1]
  local name, capacity = ARGV[5 + 2 * i], tonumber(ARGV[6 + 2 * i])
  local length = redis.call('LLEN', q)
  if length >= capacity then
    while true do
      local head = redis.call('LINDEX', q, 0)
      if not head or not expired(head) then break end
      redis.call('LPOP', q)
      drop_expired(s, g, head)
      length = length - 1
    end
  end
  if length >= capacity then
    refused = refused + 1
    count(s, g, 'full', 1)
    bump_rate(s, 'f', 1)
    bump_rate(g, 'f', 1)
  else
    redis.call('RPUSH', q, stamp .. name .. ' ' .. payload)
    redis.call('EXPIRE', q, qttl)
    delivered = delivered + 1
    count(s, g, 'sent', 1)
    bump_rate(s, 's', 1)
    bump_rate(g, 's', 1)
  end
  redis.call('EXPIRE', s, sttl)
end
return with_evicted({delivered, refused})
"""

POP = _COMMON + """
-- Take the first unexpired entry from the queues in the order given; expired ones are dropped.
-- KEYS: global stats, queue 1..n, channel stats 1..n.   ARGV: now
-- Returns {entry or '', evicted channel...}.
local g = KEYS[1]
local n = (#KEYS - 1) / 2
for i = 1, n do
  local q, s = KEYS[1 + i], KEYS[1 + n + i]
  while true do
    local entry = redis.call('LPOP', q)
    if not entry then break end
    if not expired(entry) then
      count(s, g, 'received', 1)
      return with_evicted({entry})
    end
    drop_expired(s, g, entry)
  end
end
return with_evicted({''})
"""

SETTLE = _COMMON + """
-- Account for an entry a blocking pop took: 'take' counts it received (1) unless it expired (0);
-- 'return' puts it back at the head of its queue (2), for a receive that no longer wants it.
-- KEYS: global stats, queue, channel stats.   ARGV: now, entry, 'take' | 'return', queue ttl
-- Returns {code, evicted channel...}.
local g, q, s = KEYS[1], KEYS[2], KEYS[3]
if expired(ARGV[2]) then
  drop_expired(s, g, ARGV[2])
  return with_evicted({0})
end
if ARGV[3] == 'take' then
  count(s, g, 'received', 1)
  return {1}
end
redis.call('LPUSH', q, ARGV[2])
redis.call('EXPIRE', q, tonumber(ARGV[4]))
return {2}
"""
