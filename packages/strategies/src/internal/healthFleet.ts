// HealthAware's side of a fleet (see `HealthShare.ts`): what it publishes and how the fleet's
// state is merged into its records.
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import type { Record } from "../HealthAware.js"
import type * as HealthShare from "../HealthShare.js"
import { HealthShare as HealthShareTag } from "../HealthShare.js"
import { ns, type Store } from "./common.js"

type Step = (r: Record | undefined) => readonly [void, Record | undefined]

/** `step`, publishing the key's new end to the fleet when it takes the key out (or further out). */
export const publishing =
  (share: HealthShare.Service, keyId: string, step: Step, now: number, cooldown: boolean): Step =>
  (r) => {
    const out = step(r)
    const next = out[1]
    if (next?.until !== undefined && next.until !== r?.until && next.until > now)
      share.publish(keyId, next.until - now, next.reason ?? "", cooldown ? "cooldown" : "ejected")
    return out
  }

/**
 * Registers the records with the fleet's poll; the fleet's state only ever extends what is here
 * (within 50 ms: the two clocks' readings of one end differ by a round trip). Returns the
 * unregistration.
 */
export const register = (
  share: HealthShare.Service,
  st: Store,
  pool: KeyPool.Service,
  clock: Clock.Clock
): (() => void) => {
  const merge = (keyId: string, remainingMs: number, reason: string) => {
    const until = clock.unsafeCurrentTimeMillis() + remainingMs
    const done = st.update<Record>(ns.health, keyId, (r) =>
      r?.until !== undefined && r.until + 50 >= until
        ? [undefined, r]
        : [
            undefined,
            {
              failures: r?.failures ?? 0,
              ejections: Math.max(1, r?.ejections ?? 0),
              until,
              reason,
              testing: r?.testing
            }
          ]
    )
    if (KeySelector.isPending(done)) Effect.runFork(done)
  }
  return share.register({
    keys: () => (pool.unsafeGet?.() ?? []).map((k) => k.id),
    merge,
    // An account out over the fleet (its credits, or an account-wide 429): every key of it here.
    mergeAccount: (account, remainingMs, reason) => {
      for (const k of pool.unsafeGet?.() ?? []) if (k.account === account) merge(k.id, remainingMs, reason)
    }
  })
}

/**
 * An account-wide refusal seen here (an account's 429, or its credits): the fleet takes every key of
 * the account out for as long as `step` takes out a key with no record.
 */
export const publishAccount = (
  share: HealthShare.Service,
  account: string,
  step: Step,
  now: number
): void => {
  const next = step(undefined)[1]
  if (next?.until !== undefined && next.until > now)
    share.publishAccount(account, next.until - now, next.reason ?? "account")
}

/** The fleet's trial slot went to another replica: the key stays out here until `until`. */
export const lostTrial =
  (until: number): Step =>
  (r) => [undefined, r === undefined ? r : { ...r, testing: false, until: Math.max(r.until ?? 0, until) }]

/** The reason an account out of credit is shared under (OpenRouter's `limit_source`). */
export const OUT_OF_CREDITS = "openrouter_credits"

/**
 * The credit ledger's accounts out of credit, shared over the fleet when there is one: the fleet's
 * are merged in (only ever extending) at each poll, until the scope (if any) closes. Answers how to
 * publish one taken out here, or `undefined` without a fleet.
 */
export const shareAccountsOut = (accounts: {
  readonly outUntil: (account: string, until: number) => void
}): Effect.Effect<((account: string, forMs: number) => void) | undefined> =>
  Effect.gen(function* () {
    const share = Option.getOrUndefined(yield* Effect.serviceOption(HealthShareTag))
    if (share === undefined) return undefined
    const clock = yield* Effect.clock
    const unregister = share.register({
      keys: () => [],
      merge: () => {},
      // Only credit: an account-wide 429 is HealthAware's and the Balancer's, not a balance.
      mergeAccount: (account, remainingMs, reason) => {
        if (reason === OUT_OF_CREDITS)
          accounts.outUntil(account, clock.unsafeCurrentTimeMillis() + remainingMs)
      }
    })
    const scope = yield* Effect.serviceOption(Scope.Scope)
    if (Option.isSome(scope)) yield* Scope.addFinalizer(scope.value, Effect.sync(unregister))
    return (account: string, forMs: number) => share.publishAccount(account, forMs, OUT_OF_CREDITS)
  })
