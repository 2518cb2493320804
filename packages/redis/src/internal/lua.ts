/**
 * The Lua scripts, one per atomic step. Rules they all keep:
 * - every key a script touches is passed in KEYS and carries the key's hash tag, so a script runs
 *   on one Cluster slot;
 * - time is Redis's `TIME`, never an argument from a replica, and durations (not instants) go
 *   back to the replica, which counts them on its own clock from when it sent the call;
 * - amounts are integers (permits, micro-dollars).
 *
 * A slice table (permits or credit) is one hash: `g:<replica>` granted, `w:<replica>` wanted,
 * `e:<replica>` expiry (server ms). Expired slices are dropped when read: their amount returns to
 * the pool.
 */

import type { Script } from "../RedisStore.js"

const NOW = `
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// Reads a slice table, drops expired slices, and returns the live ones.
const SLICES = `
local function total_granted(s)
  local sum = 0
  for _, r in pairs(s) do sum = sum + r.g end
  return sum
end

local function read_slices(key, now)
  local raw = redis.call('HGETALL', key)
  local s = {}
  local fields = {}
  for i = 1, #raw, 2 do
    local f = raw[i]
    local kind, id = string.sub(f, 1, 1), string.sub(f, 3)
    if string.sub(f, 2, 2) == ':' and (kind == 'g' or kind == 'w' or kind == 'e') then
      local r = s[id]
      if r == nil then r = { g = 0, w = 0, e = 0 }; s[id] = r end
      r[kind] = tonumber(raw[i + 1])
    else
      fields[f] = raw[i + 1]
    end
  end
  for id, r in pairs(s) do
    if r.e <= now then
      redis.call('HDEL', key, 'g:' .. id, 'w:' .. id, 'e:' .. id)
      s[id] = nil
    end
  end
  return s, fields
end

-- Water-filling over demands: each live replica is entitled to its demand, capped so that the
-- pool is split evenly among those who want more than an even split. So a replica is always
-- entitled to min(demand, pool / live replicas), and what one does not want goes to the others.
local function targets(pool, s, unit)
  local ids = {}
  for id, _ in pairs(s) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b)
    if s[a].w ~= s[b].w then return s[a].w < s[b].w end
    return a < b
  end)
  local t = {}
  local left = math.max(0, pool)
  for i, id in ipairs(ids) do
    local share = math.floor(left / (#ids - i + 1) / unit) * unit
    local give = math.min(s[id].w, share)
    t[id] = give
    left = left - give
  end
  return t, #ids
end

-- Grants 'me' a slice: its water-filling target, never more than what the other live slices
-- leave, and never less than what it has in use (up to what it held), so a renewal cannot take
-- away a permit or a reservation a request is running on.
-- Returns {granted, ttlMs, liveReplicas, total granted now}.
-- With a unit (credit: the largest reservation), slices are whole units of it, so a cap is not
-- left in fragments no replica can spend ($0.50 at $0.01 over 3 replicas: 16 + 17 + 17, not 3 × 0.1666).
-- A replica with no slice on record (Redis restarted empty) keeps what it has in use, as far as
-- the pool not held by others allows: requests already running count against the cap.
-- Permits pass 'claim' (what the replica may still use of a grant Redis no longer has: see
-- permitsAcquire): such a replica re-registers max(claim, in use) whatever the pool says, and while
-- the table recovers ('recover', server ms) no slice grows past what the re-registered claims free
-- ('claimed' minus the others' grants), since claims not yet re-registered are still being used.
local function grant(key, now, pool, me, want, ttl, in_use, unit, claim)
  unit = math.max(1, unit or 1)
  local s, fields = read_slices(key, now)
  local mine = s[me]
  local held = 0
  local recovering = claim ~= nil and tonumber(fields['recover'] or '0') > now
  if mine ~= nil then
    held = mine.g
  elseif claim ~= nil then
    held = math.max(claim, in_use)
    if recovering then redis.call('HINCRBY', key, 'claimed', held); fields['claimed'] = tonumber(fields['claimed'] or '0') + held end
  else
    held = math.max(0, pool - total_granted(s))
  end
  local keep = math.min(held, in_use)
  if want <= 0 and keep <= 0 then
    redis.call('HDEL', key, 'g:' .. me, 'w:' .. me, 'e:' .. me)
    s[me] = nil
    local n = 0
    for _ in pairs(s) do n = n + 1 end
    return { 0, 0, n, total_granted(s) }
  end
  s[me] = { g = held, w = want, e = now + ttl }
  local t, n = targets(pool, s, unit)
  local others = 0
  local last = now + ttl
  for id, r in pairs(s) do
    if id ~= me then
      others = others + r.g
      if r.e > last then last = r.e end
    end
  end
  local g = math.floor(math.min(want, t[me], math.max(0, pool - others)) / unit) * unit
  if recovering then g = math.min(g, math.max(0, tonumber(fields['claimed'] or '0') - others)) end
  -- What the replica may use once its running requests end: the slice registered never drops
  -- below what is in use, but a replica over its share drains to this as its requests end.
  local fair = g
  if g < keep then g = keep end
  redis.call('HSET', key, 'g:' .. me, g, 'w:' .. me, want, 'e:' .. me, now + ttl)
  redis.call('PEXPIRE', key, last - now + 60000)
  return { g, ttl, n, others + g }, fair
end
`

const script = (name: string, numberOfKeys: number, body: string): Script => ({
  name,
  numberOfKeys,
  lua: NOW + SLICES + body
})

/**
 * KEYS: permits. ARGV: replica, want, cap, ttlMs, inUse, claim, lastBorn.
 * → {granted, ttlMs, liveReplicas, totalGranted, born, usable}
 * `born` (server ms) names the table's generation. A replica that saw an earlier one (`lastBorn` > 0)
 * and finds no table knows Redis was emptied while replicas still hold slices: the new table
 * recovers for one TTL (every old slice has expired or been re-registered by then), in which slices
 * grow only into what re-registered claims free.
 */
export const permitsAcquire = script(
  "orbPermitsAcquire",
  1,
  `
local now = server_now()
local ttl = tonumber(ARGV[4])
local born = redis.call('HGET', KEYS[1], 'born')
if born == false then
  born = now
  redis.call('HSET', KEYS[1], 'born', born)
  if tonumber(ARGV[7] or '0') > 0 then redis.call('HSET', KEYS[1], 'recover', now + ttl, 'claimed', 0) end
  redis.call('PEXPIRE', KEYS[1], ttl + 60000)
end
local r, fair = grant(KEYS[1], now, tonumber(ARGV[3]), ARGV[1], tonumber(ARGV[2]), ttl, tonumber(ARGV[5]),
  1, tonumber(ARGV[6] or '0'))
r[5] = tonumber(born)
r[6] = fair or 0
return r
`
)

const RELEASE = `
local g = tonumber(redis.call('HGET', KEYS[1], 'g:' .. ARGV[1]) or '0')
redis.call('HDEL', KEYS[1], 'g:' .. ARGV[1], 'w:' .. ARGV[1], 'e:' .. ARGV[1])
return g
`

/** KEYS: permits. ARGV: replica. → permits given back */
export const permitsRelease = script("orbPermitsRelease", 1, RELEASE)

/** KEYS: a slice table. → {total granted, then replica, granted, wanted, ttlMs for each live slice} */
export const slicesInspect = script(
  "orbSlicesInspect",
  1,
  `
local now = server_now()
local s, fields = read_slices(KEYS[1], now)
local out = { total_granted(s), tonumber(fields['base'] or '-1'), tonumber(fields['spent'] or '0') }
for id, r in pairs(s) do
  out[#out + 1] = id
  out[#out + 1] = r.g
  out[#out + 1] = r.w
  out[#out + 1] = r.e - now
end
return out
`
)

/**
 * KEYS: credit. ARGV: replica, want, available, ttlMs, inUse, unit. → {granted, ttlMs, liveReplicas, unallocated}
 * `available` seeds the ledger only when it has none (first use, or Redis restarted empty); after
 * that the ledger's own base (set by `creditRefresh`) minus settled spend is the pool. A negative
 * `available` never seeds: with no ledger the answer is {0, 0, 0, -1}.
 */
export const creditReserve = script(
  "orbCreditReserve",
  1,
  `
local now = server_now()
local base = redis.call('HGET', KEYS[1], 'base')
if base == false then
  -- A negative figure: do not seed from it; the caller looks the key up (under the lock) first.
  if tonumber(ARGV[3]) < 0 then return { 0, 0, 0, -1 } end
  base = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'base', base, 'spent', 0)
else
  base = tonumber(base)
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local r = grant(KEYS[1], now, base - spent, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6] or '1'))
r[4] = math.max(0, base - spent - r[4])
return r
`
)

/**
 * KEYS: credit. ARGV: replica, spent, [settled before, epoch]. → the replica's slice left after the
 * spend. With "settled before" (the replica's spend Redis acknowledged) and its process's epoch,
 * the running total is kept in 'c:<replica>' as "epoch:total", so a settle sent again after a lost
 * reply records only what is new; a new epoch (the replica restarted) starts a new total.
 */
export const creditSettle = script(
  "orbCreditSettle",
  1,
  `
-- No ledger (Redis restarted empty): the spend is in the upstream's figure the next seed comes from.
if redis.call('HEXISTS', KEYS[1], 'base') == 0 then return 0 end
local spent = tonumber(ARGV[2])
if ARGV[4] ~= nil then
  local before = tonumber(ARGV[3])
  local total = before + spent
  local seen = redis.call('HGET', KEYS[1], 'c:' .. ARGV[1])
  if seen ~= false then
    local sep = string.find(seen, ':', 1, true)
    if sep ~= nil and string.sub(seen, 1, sep - 1) == ARGV[4] then
      spent = math.max(0, total - math.max(before, tonumber(string.sub(seen, sep + 1))))
    end
  end
  redis.call('HSET', KEYS[1], 'c:' .. ARGV[1], ARGV[4] .. ':' .. total)
end
redis.call('HINCRBY', KEYS[1], 'spent', spent)
local g = redis.call('HGET', KEYS[1], 'g:' .. ARGV[1])
if g == false then return 0 end
local left = math.max(0, tonumber(g) - spent)
redis.call('HSET', KEYS[1], 'g:' .. ARGV[1], left)
return left
`
)

/** KEYS: credit. ARGV: replica. → the unspent part given back */
export const creditRelease = script("orbCreditRelease", 1, RELEASE)

/**
 * KEYS: refresh lock, credit. ARGV: replica, ttlMs. → 1 when this replica took the lock. Notes the
 * spend settled so far: spend settled later may be missing from the figure the lookup returns.
 */
export const creditLock = script(
  "orbCreditLock",
  2,
  `
if redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]), 'NX') == false then return 0 end
redis.call('HSET', KEYS[2], 'lockspent', tonumber(redis.call('HGET', KEYS[2], 'spent') or '0'))
return 1
`
)

/**
 * KEYS: credit, refresh lock. ARGV: replica, available. → 1 when applied, 0 when the replica does
 * not hold the lock. The fresh figure already excludes what was spent before the lock was taken,
 * so `spent` keeps only what was settled since (counted twice if the lookup saw it too: the safe
 * side); live slices stay reserved against the new base.
 */
export const creditRefresh = script(
  "orbCreditRefresh",
  2,
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local before = tonumber(redis.call('HGET', KEYS[1], 'lockspent') or tostring(spent))
redis.call('HSET', KEYS[1], 'base', tonumber(ARGV[2]), 'spent', math.max(0, spent - before))
redis.call('HDEL', KEYS[1], 'lockspent')
redis.call('DEL', KEYS[2])
return 1
`
)

/** KEYS: a lock. ARGV: owner. → 1 when the owner held it and it is now free */
export const unlock = script(
  "orbUnlock",
  1,
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
)

/**
 * KEYS: health. ARGV: field ("cooldown" | "ejected"), forMs, reason. → {remainingMs, extended}
 * Only ever extends: a write that would end the state sooner than it already ends is ignored.
 */
export const healthExtend = script(
  "orbHealthExtend",
  1,
  `
local now = server_now()
local until_ms = now + tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local extended = 0
if until_ms > cur then
  redis.call('HSET', KEYS[1], ARGV[1], until_ms, ARGV[1] .. ':reason', ARGV[3])
  cur = until_ms
  extended = 1
end
local c = tonumber(redis.call('HGET', KEYS[1], 'cooldown') or '0')
local e = tonumber(redis.call('HGET', KEYS[1], 'ejected') or '0')
redis.call('PEXPIRE', KEYS[1], math.max(c, e) - now + 1000)
return { cur - now, extended }
`
)

/** KEYS: health. → {cooldownRemainingMs, cooldownReason, ejectedRemainingMs, ejectedReason} */
export const healthRead = script(
  "orbHealthRead",
  1,
  `
local now = server_now()
local h = redis.call('HMGET', KEYS[1], 'cooldown', 'cooldown:reason', 'ejected', 'ejected:reason')
local c = math.max(0, tonumber(h[1] or '0') - now)
local e = math.max(0, tonumber(h[3] or '0') - now)
return { c, c > 0 and h[2] or '', e, e > 0 and h[4] or '' }
`
)

/**
 * KEYS: health, probe. ARGV: replica, readmit (1|0). Ends the replica's probe; a successful one
 * (readmit) lifts the ejection, the only write that ends one early, and only from the fleet's one
 * prober. → 1 when the replica held the probe
 */
export const probeEnd = script(
  "orbProbeEnd",
  2,
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'ejected', 'ejected:reason') end
return 1
`
)

export const all: ReadonlyArray<Script> = [
  permitsAcquire,
  permitsRelease,
  slicesInspect,
  creditReserve,
  creditSettle,
  creditRelease,
  creditLock,
  creditRefresh,
  unlock,
  healthExtend,
  healthRead,
  probeEnd
]
