// A ledger operation's answer: a value now, or `Pending` (an Effect still to run: a lookup due, or
// a store without synchronous forms), and how selections continue from either.
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import type * as CreditLedger from "../CreditLedger.js"

type Step<A> = CreditLedger.Step<A>

export class Pending<A> {
  readonly _tag = "Pending"
  constructor(readonly effect: Effect.Effect<A>) {}
}

// A tag check, not `instanceof` (see core's decision tags): a step is a Pending or a plain value.
export const isPending = <A>(step: Step<A>): step is Pending<A> =>
  typeof step === "object" && step !== null && (step as { readonly _tag?: unknown })._tag === "Pending"

export const stepEffect = <A>(step: Step<A>): Effect.Effect<A> =>
  isPending(step) ? step.effect : Effect.succeed(step)

export const decideWith = <A>(step: Step<A>, k: (a: A) => KeySelector.Decision): KeySelector.Decision =>
  isPending(step) ? KeySelector.waitFor(step.effect, k) : k(step)
