// HealthAware's record transitions (see `HealthAware.ts`): each is one `modify` of a key's record.
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type { KeyHealth, Record, Status } from "../HealthAware.js"

export type Step = (r: Record | undefined) => readonly [void, Record | undefined]
export type Claim = "trial" | "plain" | "taken"

export const isOut = (r: Record | undefined, now: number) => r?.until !== undefined && r.until > now
/** Ejected for the key's own refusal (401; 402 of the key or its account): panic does not bring it back. */
export const isKeyDead = (reason: string | undefined) =>
  reason !== undefined && (reason === "Unauthorized" || reason.startsWith("InsufficientCredits"))
export const isHalfOpen = (r: Record | undefined, now: number) => r?.until !== undefined && r.until <= now
export const isDue = (r: Record | undefined, now: number) => isHalfOpen(r, now) && r?.testing !== true

// A failure that is not the key's: a half-open trial simply ends, the key stays half-open.
export const endTesting: Step = (r) => [undefined, r === undefined ? r : { ...r, testing: false }]

// A trial with no verdict frees the slot.
export const endTrialStep: Step = (r) => [undefined, r && r.testing === true ? { ...r, testing: false } : r]

export const claimTrial = (r: Record | undefined): readonly [Claim, Record | undefined] =>
  r === undefined || r.until === undefined
    ? ["plain", r] // closed meanwhile (a late success): no trial needed
    : r.testing === true
      ? ["taken", r]
      : ["trial", { ...r, testing: true }]

// What the claim makes of the inner lease. A slot taken by another selection sends this one back
// to select again, unless in panic, where health is ignored and there is no trial to wait for.
export const afterClaim = (claim: Claim, gated: boolean): "trial" | "plain" | "again" =>
  claim === "trial" ? "trial" : claim === "plain" || !gated ? "plain" : "again"

export const waitOf = (error: UpstreamError.UpstreamError): number | undefined =>
  Option.getOrUndefined(Option.map(UpstreamError.retryAfterOf(error), Duration.toMillis))

/** A key's limit reset further away than this (a month and a day) is not believed. */
const MAX_LIMIT_OUT_MS = 32 * 86_400_000

/** Until when a key refused for its own limit is out, when the refusal said (`resets_at`). */
const limitResetOf = (error: UpstreamError.UpstreamError, now: number): number | undefined =>
  error._tag === "InsufficientCredits" &&
  error.scope !== "account" &&
  error.until !== undefined &&
  error.until > now
    ? Math.min(error.until, now + MAX_LIMIT_OUT_MS)
    : undefined

/** The transitions, for one decorator's settings. */
export const make = (config: { readonly threshold: number; readonly base: number; readonly max: number }) => {
  const { base, max, threshold } = config

  const ejected = (r: Record | undefined, now: number, reason: string, wait: number | undefined): Record => {
    const ejections = (r?.ejections ?? 0) + 1
    const cooldown = Math.min(max, wait ?? base * 2 ** (ejections - 1))
    return { failures: 0, ejections, until: now + cooldown, reason }
  }

  const failed = (error: UpstreamError.UpstreamError, now: number): Step => {
    const wait = waitOf(error)
    // A key at its own limit is out until the limit resets, not for a doubling cooldown.
    const reset = limitResetOf(error, now)
    return (r) => {
      if (reset !== undefined)
        return [
          undefined,
          { failures: 0, ejections: (r?.ejections ?? 0) + 1, until: reset, reason: error._tag }
        ]
      const failures = (r?.failures ?? 0) + 1
      const eject =
        r?.until !== undefined || // a failed half-open trial (or a late report while out)
        wait !== undefined ||
        UpstreamError.disposition(error) === "eject" ||
        failures >= threshold
      return [
        undefined,
        eject ? ejected(r, now, error._tag, wait) : { ...r, ejections: r?.ejections ?? 0, failures }
      ]
    }
  }

  // A 429 for the whole account cools the account's other keys, and a 402 for the account's
  // credits (`openrouter_credits`) takes them out: which ones, and their transition.
  const accountWide = (
    key: Key.Key,
    error: UpstreamError.UpstreamError,
    now: number
  ): { readonly covers: (k: Key.Key) => boolean; readonly step: Step } | undefined => {
    if (key.account === undefined) return undefined
    const account = key.account
    const covers = (k: Key.Key) => k.account === account && k.id !== key.id
    if (error._tag === "RateLimited" && error.scope === "account") {
      const until = now + Math.min(max, waitOf(error) ?? base)
      return { covers, step: outUntil(until, `RateLimited (account ${account})`) }
    }
    if (error._tag === "InsufficientCredits" && error.scope === "account") {
      // Out as long as the key that was refused: its cooldown doubles while the account stays
      // without credit, and each re-check is one trial.
      return {
        covers,
        step: (r) => {
          const [, next] = failed(error, now)(r)
          return [undefined, { ...next!, reason: `InsufficientCredits (account ${account})` }]
        }
      }
    }
    return undefined
  }

  return { failed, accountWide }
}

const outUntil =
  (until: number, reason: string): Step =>
  (r) => [
    undefined,
    {
      failures: r?.failures ?? 0,
      ejections: r?.ejections ?? 0,
      until: Math.max(r?.until ?? 0, until),
      reason
    }
  ]

/**
 * What a free probe (`GET /key`) says of a key: healthy (`undefined`), or, when it has nothing left
 * under its limit, out of credit until its `limit_reset` (a key that answers but would 402 is not
 * back).
 */
export const probeVerdict = (
  info: CreditLookup.KeyInfo,
  now: number
): UpstreamError.InsufficientCredits | undefined => {
  if (info.limitRemaining === null || info.limitRemaining > 0) return undefined
  const message = "the key's limit has nothing left (GET /key)"
  return info.limitReset === null
    ? new UpstreamError.InsufficientCredits({ message, scope: "key" })
    : new UpstreamError.InsufficientCredits({
        message,
        scope: "key",
        until: CreditLookup.nextReset(info.limitReset, now)
      })
}

/** Every key's health from the records; panic judged against `panicThreshold`. */
export const statusOf = (
  keys: ReadonlyArray<Key.Key>,
  records: ReadonlyMap<string, Record>,
  now: number,
  panicThreshold: number
): Status => {
  let out = 0
  const list = keys.map((k): KeyHealth => {
    const r = records.get(k.id)
    const state = isOut(r, now) ? "ejected" : isHalfOpen(r, now) ? "half-open" : "healthy"
    if (state === "ejected") out++
    return {
      id: k.id,
      state,
      consecutiveFailures: r?.failures ?? 0,
      ejections: r?.ejections ?? 0,
      until: r?.until,
      reason: r?.reason
    }
  })
  return { keys: list, panic: keys.length > 0 && out / keys.length > panicThreshold }
}
