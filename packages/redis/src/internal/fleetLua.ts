/**
 * The fleet-wide scripts that are not one balancer key's (see `lua.ts` for the rules they keep): the
 * accounts out of credit (or under an account-wide 429), and the rate windows pacing learned with the
 * replicas pacing by them. Each is one small hash (or two under one hash tag), so one slot.
 */
import type { Script } from "../RedisStore.js"

const NOW = `
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

const script = (name: string, numberOfKeys: number, body: string): Script => ({
  name,
  numberOfKeys,
  lua: NOW + body
})

/**
 * KEYS: accounts out. ARGV: account, forMs, reason. → remainingMs after the write. Only ever extends.
 * Fields: `<account>` the end (server ms), `<account>:reason`.
 */
export const accountOutExtend = script(
  "orbAccountOutExtend",
  1,
  `
local now = server_now()
local until_ms = now + tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if until_ms > cur then
  redis.call('HSET', KEYS[1], ARGV[1], until_ms, ARGV[1] .. ':reason', ARGV[3])
  cur = until_ms
end
if redis.call('PTTL', KEYS[1]) < cur - now + 1000 then redis.call('PEXPIRE', KEYS[1], cur - now + 1000) end
return cur - now
`
)

/** KEYS: accounts out. → {account, remainingMs, reason, ...} for each account still out (ended ones dropped) */
export const accountsOutRead = script(
  "orbAccountsOutRead",
  1,
  `
local now = server_now()
local raw = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local out = {}
for f, v in pairs(h) do
  if string.sub(f, -7) ~= ':reason' then
    local left = tonumber(v) - now
    if left > 0 then
      out[#out + 1] = f
      out[#out + 1] = left
      out[#out + 1] = h[f .. ':reason'] or ''
    else
      redis.call('HDEL', KEYS[1], f, f .. ':reason')
    end
  end
end
return out
`
)

/**
 * KEYS: pacing windows. ARGV: window id, limit (-1: none), windowMs (-1: none), closedMs. A learned
 * window: the latest limit and length replace the last; its closing only ever extends. Field
 * `<id>` = "limit|windowMs|closedUntil" (server ms; -1 unknown). Kept a day after the last write.
 */
export const pacingPublish = script(
  "orbPacingPublish",
  1,
  `
local now = server_now()
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local limit, len, closed = -1, -1, 0
if cur then
  local a, b, c = string.match(cur, '^(-?%d+)|(-?%d+)|(-?%d+)$')
  limit, len, closed = tonumber(a), tonumber(b), tonumber(c)
end
if tonumber(ARGV[2]) >= 0 then limit = tonumber(ARGV[2]) end
if tonumber(ARGV[3]) >= 0 then len = tonumber(ARGV[3]) end
closed = math.max(closed, now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], ARGV[1], limit .. '|' .. len .. '|' .. closed)
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1
`
)

/**
 * KEYS: pacing windows, pacing replicas. ARGV: replica, aliveMs. Marks the replica live for aliveMs,
 * drops replicas gone quiet. → {live replicas, then id, limit, windowMs, closedMs for each window}
 */
export const pacingSync = script(
  "orbPacingSync",
  2,
  `
local now = server_now()
redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
local reps = redis.call('HGETALL', KEYS[2])
local live = 0
for i = 1, #reps, 2 do
  if tonumber(reps[i + 1]) > now then live = live + 1 else redis.call('HDEL', KEYS[2], reps[i]) end
end
local out = { live }
local ws = redis.call('HGETALL', KEYS[1])
for i = 1, #ws, 2 do
  local a, b, c = string.match(ws[i + 1], '^(-?%d+)|(-?%d+)|(-?%d+)$')
  out[#out + 1] = ws[i]
  out[#out + 1] = tonumber(a)
  out[#out + 1] = tonumber(b)
  out[#out + 1] = math.max(0, tonumber(c) - now)
end
return out
`
)
