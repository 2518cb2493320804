/**
 * Credit forecasts: per key (and per account, summed over its keys) the burn rate over a sliding
 * window, when the credit runs out at that rate, and when the key's `limit_reset` period brings
 * it back (00:00 UTC, from `GET /key`). The window is sampled from the monitor's cumulative spend
 * whenever `/status` or `/metrics` is read and by a slow background tick, never on a request.
 */
import * as CreditLookup from "@or-balancer/core/CreditLookup"

/** The default sliding window: five minutes. */
export const WINDOW_MS = 5 * 60_000

interface Sample {
  readonly at: number
  readonly spend: number
}

/** Per key id, its cumulative spend samples, oldest first, within the window (plus one before it). */
export type Samples = Map<string, Array<Sample>>

export const makeSamples = (): Samples => new Map()

/** Records each key's cumulative spend at `now`, dropping what the window no longer needs. */
export const sample = (
  samples: Samples,
  spend: ReadonlyArray<{ readonly id: string; readonly spend: number }>,
  now: number,
  windowMs = WINDOW_MS
): void => {
  for (const k of spend) {
    let list = samples.get(k.id)
    if (list === undefined) samples.set(k.id, (list = []))
    const last = list[list.length - 1]
    if (last !== undefined && last.at === now) list[list.length - 1] = { at: now, spend: k.spend }
    else list.push({ at: now, spend: k.spend })
    // Keep one sample at or before the window's start, so the rate covers the whole window.
    while (list.length > 2 && list[1]!.at <= now - windowMs) list.shift()
  }
}

/** USD per minute over the window; 0 before two samples a moment apart. */
export const burnPerMinute = (samples: Samples, id: string): number => {
  const list = samples.get(id)
  if (list === undefined || list.length < 2) return 0
  const first = list[0]!
  const last = list[list.length - 1]!
  const minutes = (last.at - first.at) / 60_000
  return minutes <= 0 ? 0 : Math.max(0, last.spend - first.spend) / minutes
}

/** One forecast, as `/status` shows it. */
export interface Forecast {
  /** USD per minute over the last few minutes. */
  readonly burnUsdPerMin: number
  /** ISO time the credit runs out at that rate; null when unknown, unlimited or not burning. */
  readonly exhaustsAt: string | null
  /** ISO time the key's `limit_reset` period renews its cap; null when it has none (or unknown). */
  readonly resetsAt: string | null
  /** Seconds until exhaustion (for `/metrics`); null as `exhaustsAt`. */
  readonly exhaustionSeconds: number | null
}

export const forecast = (
  burn: number,
  credit: number | null,
  reset: "daily" | "weekly" | "monthly" | null | undefined,
  now: number
): Forecast => {
  const seconds = credit === null || burn <= 0 ? null : (Math.max(0, credit) / burn) * 60
  return {
    burnUsdPerMin: burn,
    exhaustsAt: seconds === null ? null : new Date(now + seconds * 1000).toISOString(),
    resetsAt:
      reset === null || reset === undefined
        ? null
        : new Date(CreditLookup.nextReset(reset, now)).toISOString(),
    exhaustionSeconds: seconds
  }
}

/**
 * An account's forecast from its keys': burn rates and credits add up (an unknown credit makes the
 * sum unknown); it comes back at the earliest of its keys' resets.
 */
export const sumForecast = (
  keys: ReadonlyArray<{
    readonly burn: number
    readonly credit: number | null
    readonly reset: "daily" | "weekly" | "monthly" | null | undefined
  }>,
  now: number
): Forecast => {
  let burn = 0
  let credit: number | null = 0
  let reset: number | undefined
  for (const k of keys) {
    burn += k.burn
    credit = credit === null || k.credit === null ? null : credit + k.credit
    if (k.reset !== null && k.reset !== undefined) {
      const at = CreditLookup.nextReset(k.reset, now)
      reset = reset === undefined ? at : Math.min(reset, at)
    }
  }
  const f = forecast(burn, credit, null, now)
  return { ...f, resetsAt: reset === undefined ? null : new Date(reset).toISOString() }
}
