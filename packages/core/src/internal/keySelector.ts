// A decision and its Effect form (see `KeySelector.ts`): selectors made from a synchronous
// decision, and the combinators decorators map decisions with.
import * as Effect from "effect/Effect"
import type * as KeySelector from "../KeySelector.js"
import { isNoKeyAvailable, isWait, type NoKeyAvailable, Wait } from "./decision.js"
import { isPending, once } from "./lease.js"

/** The Effect form of a decision: its waits run until it is a lease or a refusal. */
export const run = (decision: KeySelector.Decision): Effect.Effect<KeySelector.Lease, NoKeyAvailable> =>
  isWait(decision)
    ? Effect.flatMap(decision.effect, run)
    : isNoKeyAvailable(decision)
      ? Effect.fail(decision)
      : Effect.succeed(decision)

export const andThen = (
  decision: KeySelector.Decision,
  f: (settled: KeySelector.Lease | NoKeyAvailable) => KeySelector.Decision
): KeySelector.Decision =>
  isWait(decision) ? new Wait(Effect.map(decision.effect, (next) => andThen(next, f))) : f(decision)

export const fromDecide = (
  decide: (request: KeySelector.SelectRequest) => KeySelector.Decision
): KeySelector.Service => ({
  decide,
  // Suspended: the decision is made when the Effect runs, each time it runs.
  select: (request) =>
    Effect.map(
      Effect.suspend(() => run(decide(request))),
      once
    )
})

export const make = (select: KeySelector.Service["select"]): KeySelector.Service =>
  // Its refusal becomes the decision's value, so decorators above see it as any other answer.
  fromDecide((request) => new Wait(Effect.merge(select(request))))

export const giveBack = (
  lease: KeySelector.Lease,
  outcome: KeySelector.Outcome,
  then: () => KeySelector.Decision
): KeySelector.Decision => {
  const reported = lease.unsafeReport(outcome)
  return isPending(reported) ? new Wait(Effect.map(reported, then)) : then()
}

export const waitFor = <A>(effect: Effect.Effect<A>, then: (a: A) => KeySelector.Decision): Wait =>
  new Wait(Effect.map(effect, then))

export const isLease = (decision: KeySelector.Decision): decision is KeySelector.Lease =>
  !isWait(decision) && !isNoKeyAvailable(decision)
