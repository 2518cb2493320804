// AccountPacing's side of a fleet (see `PacingShare.ts`): what it publishes when it learns a window,
// and how the fleet's windows are adopted. A limit from `X-RateLimit-Limit` is the whole fleet's:
// each replica admits its share, the limit ÷ the live replicas (at least 1).
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { PacingShare } from "../PacingShare.js"
import type * as W from "./accountPacing.js"

export interface Fleet {
  /** After window `id` learned from a refusal (`limit`: the header's, if any): share it, take this replica's part. */
  readonly learned: (id: string, w: W.Window, limit: number | undefined) => void
  /** Each window's whole-fleet limit and the live replicas, for status. */
  readonly fleetLimit: (id: string) => { readonly limit: number; readonly replicas: number } | undefined
}

const shareOf = (limit: number, replicas: number) => Math.max(1, Math.floor(limit / Math.max(1, replicas)))

/** The fleet's pacing for `windows`, or `undefined` without a `PacingShare`. */
export const make = (windows: W.Windows): Effect.Effect<Fleet | undefined> =>
  Effect.gen(function* () {
    const share = Option.getOrUndefined(yield* Effect.serviceOption(PacingShare))
    if (share === undefined) return undefined
    const clock: Clock.Clock = yield* Effect.clock
    // The whole fleet's exact limits, by window id; the live replicas at the last poll.
    const limits = new Map<string, number>()
    let replicas = 1
    const unregister = share.register({
      adopt: (id, learned, live) => {
        replicas = Math.max(1, live)
        const w = windows.get(id)
        const paced = w.limit !== undefined || w.closedUntil > 0
        if (learned.limit !== undefined) {
          limits.set(id, learned.limit)
          w.limit = shareOf(learned.limit, replicas)
          w.exact = true
        }
        if (learned.windowMs !== undefined) w.windowMs = learned.windowMs
        if (learned.closedMs > 0)
          w.closedUntil = Math.max(w.closedUntil, clock.unsafeCurrentTimeMillis() + learned.closedMs)
        if (!paced && (w.limit !== undefined || w.closedUntil > 0)) windows.paced++
      }
    })
    const scope = yield* Effect.serviceOption(Scope.Scope)
    if (Option.isSome(scope)) yield* Scope.addFinalizer(scope.value, Effect.sync(unregister))
    return {
      learned: (id, w, limit) => {
        if (limit !== undefined) {
          limits.set(id, limit)
          w.limit = shareOf(limit, replicas)
        }
        const now = clock.unsafeCurrentTimeMillis()
        share.publish(id, {
          limit,
          windowMs: w.windowMs,
          closedMs: Math.max(0, w.closedUntil - now)
        })
      },
      fleetLimit: (id) => {
        const limit = limits.get(id)
        return limit === undefined ? undefined : { limit, replicas }
      }
    }
  })
