// When a key is out of credit beyond what its balance says (issue 14, OpenRouter's limit
// semantics): at its own limit until its next `limit_reset`, or with its whole account out of
// credit until a bounded re-check.
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import * as Effect from "effect/Effect"
import type * as Key from "@or-balancer/core/Key"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import { empty, type Slot } from "./ledgerSlots.js"

/** A limit reset further away than this (a month and a day) is not believed. */
const MAX_OUT_MS = 32 * 86_400_000

/**
 * Until when a key refused for its own limit stays out: the reset the answer named (`resets_at`),
 * else its next `limit_reset` as the last lookup gave it; `undefined` when neither is known (a key
 * whose cap never resets: out until a lookup shows credit, as before).
 */
export const keyOutUntil = (
  error: UpstreamError.InsufficientCredits | undefined,
  reset: CreditLookup.KeyInfo["limitReset"] | undefined,
  now: number
): number | undefined => {
  const until =
    error?.until !== undefined && error.until > now
      ? error.until
      : reset === undefined || reset === null
        ? undefined
        : CreditLookup.nextReset(reset, now)
  return until === undefined ? undefined : Math.min(until, now + MAX_OUT_MS)
}

/**
 * Accounts refused for their credits (`openrouter_credits`): every key of one is out until the
 * re-check, when they are tried again (another such refusal takes them out again). With a fleet
 * (`HealthShare`), shared: see `healthFleet.ts`'s `shareAccountsOut`.
 */
export class AccountsOut {
  private readonly until = new Map<string, number>()
  constructor(private readonly recheckMs: number) {}

  /** Is any account out (the common answer, no: nothing else to check)? */
  get any(): boolean {
    return this.until.size > 0
  }

  out(account: string, now: number): number {
    const until = Math.max(this.until.get(account) ?? 0, now + this.recheckMs)
    this.until.set(account, until)
    return until
  }

  /** Out until at least `until` (another replica of a fleet saw the refusal); only ever extends. */
  outUntil(account: string, until: number): void {
    if (until > (this.until.get(account) ?? 0)) this.until.set(account, until)
  }

  /** The account is known to have credit again. */
  back(account: string): void {
    this.until.delete(account)
  }

  /** Until when the key's account is out, if it is at `now`. */
  untilOf(key: Key.Key, now: number): number | undefined {
    if (key.account === undefined) return undefined
    const until = this.until.get(key.account)
    if (until === undefined) return undefined
    if (until > now) return until
    this.until.delete(key.account)
    return undefined
  }

  /** `include`, refusing keys of accounts out at `now`. */
  including(include: (key: Key.Key) => boolean, now: number): (key: Key.Key) => boolean {
    return (k) => this.untilOf(k, now) === undefined && include(k)
  }
}

/** A key's slot after a refusal for its credit: empty until the next lookup; at its own limit, until its reset (kept across lookups). */
export const exhausting =
  (id: string, error: UpstreamError.InsufficientCredits | undefined, at: number) =>
  (cur: Slot | undefined): readonly [void, Slot] => {
    const e = cur ?? empty(id)
    const outUntil = keyOutUntil(error, e.limitReset, at)
    return [
      undefined,
      {
        ...e,
        remaining: 0,
        spent: 0,
        lookedUpAt: e.lookedUpAt ?? 0,
        outUntil: outUntil === undefined ? e.outUntil : Math.max(outUntil, e.outUntil ?? 0)
      }
    ]
  }

/** A lookup showing a higher limit than the one the key was refused under. */
export const raised = (before: number | null, after: number | null): boolean =>
  after === null ? before !== null : before !== null && after > before

/**
 * A key's lookup, its `limitRemaining` bounded by its account's balance when the lookup knows it (a
 * management key configured for the account): OpenRouter refuses a key whichever runs out first. A
 * failed balance lookup leaves the key's own answer as it is.
 */
export const lookupWithAccount = (
  lookup: CreditLookup.Service,
  key: Key.Key,
  accountsOut: AccountsOut
): Effect.Effect<CreditLookup.KeyInfo, UpstreamError.UpstreamError> => {
  const balanceOf = lookup.accountBalance
  const account = key.account
  if (balanceOf === undefined || account === undefined) return lookup.lookup(key)
  return Effect.flatMap(lookup.lookup(key), (info) =>
    Effect.map(Effect.option(balanceOf(account)), (balance) => {
      if (balance._tag === "None" || balance.value === undefined) return info
      const usd = balance.value
      // Known to have credit again: the account is back before its re-check.
      if (usd > 0) accountsOut.back(account)
      const own = info.limitRemaining
      return { ...info, limitRemaining: own === null ? Math.max(0, usd) : Math.max(0, Math.min(own, usd)) }
    })
  )
}
