// The Balancer's selection for one attempt: the stack's decision behind the cooldown and closed
// gates, waiting up to the request's deadline for a key to become eligible.
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as KeySelector from "../KeySelector.js"
import type * as StateStore from "../StateStore.js"
import type { ClosedKeys } from "./closedKeys.js"
import * as Cooldowns from "./cooldowns.js"

export type Restore = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>

export type SelectWithin = (
  clock: Clock.Clock,
  restore: Restore,
  base: Omit<KeySelector.SelectRequest, "gate" | "deadline">,
  deadlineAt: number,
  // Every eligible key already failed this request: what to try instead (one handler, not a
  // second catch frame on every selection).
  onTried: (() => Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable>) | undefined
) => Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable>

// The request's clock is read synchronously (`unsafeCurrentTimeMillis`, TestClock included):
// the same instants as `Clock.currentTimeMillis`, without an Effect step each. Selection runs
// uninterruptibly (the KeySelector contract); only the waits between tries are interruptible.
export const make = (
  selector: KeySelector.Service,
  store: StateStore.Service,
  closed: ClosedKeys
): SelectWithin => {
  const selectWithin: SelectWithin = (clock, restore, base, deadlineAt, onTried) =>
    Effect.flatMap(store.entries<number>(Cooldowns.COOLDOWN), (entries) => {
      const now = clock.unsafeCurrentTimeMillis()
      const gate = closed.gate(Cooldowns.gateOf(entries, now))
      return Effect.catchAll(
        // The decision's waits run; its lease is reported once by the attempt holding it.
        KeySelector.toEffect(
          selector.decide(
            // One object shape for every request (see `KeySelector.withGate`).
            {
              model: base.model,
              attempt: base.attempt,
              tried: base.tried,
              affinity: base.affinity,
              gate,
              deadline: deadlineAt,
              only: undefined,
              hedge: undefined
            }
          )
        ),
        (error) => {
          const wait =
            error.retryAfter === undefined ? undefined : Math.max(1, Duration.toMillis(error.retryAfter))
          if (wait !== undefined && now + wait <= deadlineAt) {
            return Effect.zipRight(
              restore(Effect.sleep(Duration.millis(wait))),
              Effect.suspend(() => selectWithin(clock, restore, base, deadlineAt, onTried))
            )
          }
          return error.reason === "tried" && onTried !== undefined ? onTried() : Effect.fail(error)
        }
      )
    })
  return selectWithin
}
