/**
 * OpenRouter's own request limits, per account (more keys do not raise them): the account's
 * window (`rpm` per `windowMs`), and for `:free` models 20 requests a minute and 50 a day (1,000
 * once the account has bought at least 10 credits), the day being the UTC calendar day.
 * A refusal is OpenRouter's 429 with `X-RateLimit-*` (reset in epoch ms) and `Retry-After`
 * (whole seconds); a provider's 429 (a fault) has `Retry-After` only.
 */
import { retryAfterSeconds } from "./wire.js"
import type { AccountState } from "./state.js"

const DAY_MS = 86_400_000
const FREE_WINDOW_MS = 60_000
/** Accounts with at least this many credits bought get the larger daily free allowance. */
const FREE_DAY_THRESHOLD_NANO = 10e9

export interface Limited {
  readonly message: string
  readonly limit: number
  readonly reset: number
}

/** Headers of OpenRouter's own 429. */
export const headers = (l: Limited, at: number): Record<string, string> => ({
  "retry-after": retryAfterSeconds(l.reset, at),
  "x-ratelimit-limit": String(l.limit),
  "x-ratelimit-remaining": "0",
  "x-ratelimit-reset": String(l.reset)
})

const freePerDay = (a: AccountState): number | null =>
  a.freePerDay !== undefined
    ? a.freePerDay
    : a.totalCredits !== undefined && a.totalCredits >= FREE_DAY_THRESHOLD_NANO
      ? 1000
      : 50

/**
 * Admits one request of the account, counting it in every window it falls in, or says which
 * window is closed (and counts nothing).
 */
export const admit = (a: AccountState, free: boolean, at: number): Limited | undefined => {
  // A window opens at the first request after the previous one ended.
  if (a.rpm !== null && at >= a.windowStart + a.windowMs) {
    a.windowStart = at
    a.count = 0
  }
  if (a.rpm !== null && a.count >= a.rpm)
    return {
      message: "Rate limit exceeded: too many requests for this account",
      limit: a.rpm,
      reset: a.windowStart + a.windowMs
    }
  if (free) {
    const perMinute = a.freePerMinute
    if (perMinute !== null) {
      if (at >= a.freeWindowStart + FREE_WINDOW_MS) {
        a.freeWindowStart = at
        a.freeCount = 0
      }
      if (a.freeCount >= perMinute)
        return {
          message: "Rate limit exceeded: free-models-per-min.",
          limit: perMinute,
          reset: a.freeWindowStart + FREE_WINDOW_MS
        }
    }
    const perDay = freePerDay(a)
    if (perDay !== null) {
      const day = Math.floor(at / DAY_MS) * DAY_MS
      if (day !== a.freeDay) {
        a.freeDay = day
        a.freeDayCount = 0
      }
      if (a.freeDayCount >= perDay)
        return {
          message:
            perDay < 1000
              ? "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day"
              : "Rate limit exceeded: free-models-per-day.",
          limit: perDay,
          reset: day + DAY_MS
        }
    }
    if (perMinute !== null) a.freeCount++
    if (perDay !== null) a.freeDayCount++
  }
  if (a.rpm !== null) a.count++
  return undefined
}
