/**
 * The client budget scripts (see `ClientBudgets.ts`), one per atomic step, keeping the rules of
 * `lua.ts`: every key under the client's hash tag, time from Redis's `TIME` (the UTC period and the
 * rate window roll over on the server's clock, never a replica's), integer nano-dollars, and
 * durations (not instants) going back to the replica.
 *
 * A budget is one hash: `period` (the server-time start of the period `spent` belongs to), `spent`,
 * `reserved`, and `r:<reservation>` per request in flight; the reservations' expiries are a sorted
 * set beside it, so a replica that dies mid-request gives its reservations back within their TTL.
 * The rate window is a sorted set of admission times.
 */
import type { Script } from "../RedisStore.js"

// Server time, and the UTC period holding it: daily, weekly (from Monday) or monthly (from the 1st).
// Days to a civil date after Howard Hinnant's `civil_from_days`.
const PERIOD = `
local DAY = 86400000
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
local function period_bounds(kind, now)
  local days = math.floor(now / DAY)
  if kind == 'daily' then return days * DAY, (days + 1) * DAY end
  if kind == 'weekly' then
    local start = days - ((days + 3) % 7)
    return start * DAY, (start + 7) * DAY
  end
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  local lengths = { 31, leap(y) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  local start = days - (d - 1)
  return start * DAY, (start + lengths[m]) * DAY
end
-- The budget's counters for the current period, with expired reservations returned to it.
-- 'floor' is spend a replica saw in this period (it started at 'floor_period'): after Redis
-- restarted empty, the first replica to call brings the spend back to what it last saw.
local function budget_state(budget, reservations, kind, now, floor, floor_period)
  local start, next_start = period_bounds(kind, now)
  local h = redis.call('HMGET', budget, 'period', 'spent', 'reserved')
  local spent = tonumber(h[2] or '0')
  local reserved = tonumber(h[3] or '0')
  if tonumber(h[1] or '-1') ~= start then
    spent = 0
    redis.call('HSET', budget, 'period', start, 'spent', 0)
  end
  if floor_period == start and floor > spent then spent = floor end
  local dead = redis.call('ZRANGEBYSCORE', reservations, '-inf', now)
  for _, id in ipairs(dead) do
    reserved = reserved - tonumber(redis.call('HGET', budget, 'r:' .. id) or '0')
    redis.call('HDEL', budget, 'r:' .. id)
    redis.call('ZREM', reservations, id)
  end
  if reserved < 0 then reserved = 0 end
  return spent, reserved, next_start
end
`

const script = (name: string, numberOfKeys: number, body: string): Script => ({
  name,
  numberOfKeys,
  lua: PERIOD + body
})

/**
 * KEYS: budget, reservations, rate. ARGV: reservation, amount, budget (-1: none), period, rpm (0:
 * none), ttlMs, catchUp (spend settled while Redis was unreachable, added first), floor,
 * floorPeriod (see `budget_state`).
 * → {verdict (1 admitted, 0 over budget, -1 over rate), spent, reserved, retryInMs, periodEndsInMs}
 */
export const reserve = script(
  "orbClientReserve",
  3,
  `
local now = server_now()
local id, amount, usd, kind = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local rpm, ttl, catch_up = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local spent, reserved, next_start = budget_state(KEYS[1], KEYS[2], kind, now, tonumber(ARGV[8]), tonumber(ARGV[9]))
spent = spent + catch_up
local verdict, retry = 1, 0
if usd >= 0 and spent + reserved + amount > usd then
  verdict, retry = 0, next_start - now
end
if verdict == 1 and rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[3]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    verdict, retry = -1, tonumber(oldest[2]) + 60000 - now
  else
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('PEXPIRE', KEYS[3], 61000)
  end
end
if verdict == 1 and usd >= 0 and amount > 0 then
  reserved = reserved + amount
  redis.call('HSET', KEYS[1], 'r:' .. id, amount)
  redis.call('ZADD', KEYS[2], now + ttl, id)
end
redis.call('HSET', KEYS[1], 'spent', spent, 'reserved', reserved)
-- A period's counters are kept a day past its end, then go.
redis.call('PEXPIRE', KEYS[1], next_start - now + DAY)
redis.call('PEXPIRE', KEYS[2], next_start - now + DAY)
return { verdict, spent, reserved, retry, next_start - now }
`
)

/**
 * KEYS: budget, reservations. ARGV: reservation, cost, period. The reservation is released and the
 * cost added to the period's spend. → {spent, reserved}
 */
export const settle = script(
  "orbClientSettle",
  2,
  `
local now = server_now()
local spent, reserved, next_start = budget_state(KEYS[1], KEYS[2], ARGV[3], now, 0, -1)
local held = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
if held then
  reserved = math.max(0, reserved - tonumber(held))
  redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
spent = spent + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'spent', spent, 'reserved', reserved)
redis.call('PEXPIRE', KEYS[1], next_start - now + DAY)
return { spent, reserved }
`
)

/**
 * KEYS: budget, reservations. ARGV: period, floor, floorPeriod, catchUp. Brings a replica's view and
 * the fleet's counters together (what a replica spent while Redis was away, what it saw before a
 * Redis restart). → {spent, reserved, periodEndsInMs}
 */
export const sync = script(
  "orbClientSync",
  2,
  `
local now = server_now()
local spent, reserved, next_start = budget_state(KEYS[1], KEYS[2], ARGV[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]))
spent = spent + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'spent', spent, 'reserved', reserved)
redis.call('PEXPIRE', KEYS[1], next_start - now + DAY)
return { spent, reserved, next_start - now }
`
)

/** Every key of one client's state carries its hash tag, so each script runs on one Cluster slot. */
const tag = (clientId: string) => `{or-balancer:client:${clientId}}`
export const budgetKey = (clientId: string) => `${tag(clientId)}:budget`
export const reservationsKey = (clientId: string) => `${tag(clientId)}:reservations`
export const rateKey = (clientId: string) => `${tag(clientId)}:rate`
