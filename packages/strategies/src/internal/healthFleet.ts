// HealthAware's side of a fleet (see `HealthShare.ts`): what it publishes and how the fleet's
// state is merged into its records.
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import type { Record } from "../HealthAware.js"
import type * as HealthShare from "../HealthShare.js"
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
): (() => void) =>
  share.register({
    keys: () => (pool.unsafeGet?.() ?? []).map((k) => k.id),
    merge: (keyId, remainingMs, reason) => {
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
      if (Effect.isEffect(done)) Effect.runFork(done)
    }
  })

/** The fleet's trial slot went to another replica: the key stays out here until `until`. */
export const lostTrial =
  (until: number): Step =>
  (r) => [undefined, r === undefined ? r : { ...r, testing: false, until: Math.max(r.until ?? 0, until) }]
