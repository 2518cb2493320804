// The decision's value classes, apart from `KeySelector.ts` so that its internal module needs
// nothing of it but types.
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as KeySelector from "../KeySelector.js"

export class NoKeyAvailable extends Schema.TaggedError<NoKeyAvailable>()("NoKeyAvailable", {
  reason: Schema.Literal(
    "empty",
    "tried",
    "cooldown",
    "unhealthy",
    "revoked",
    "credit",
    "concurrency",
    "model",
    "ineligible"
  ),
  message: Schema.String,
  retryAfter: Schema.optional(Schema.DurationFromSelf)
}) {}

/**
 * `instanceof` on these classes measured 100–300 ns per check in the gateway's process (against a
 * few ns for a tag): decisions are told apart by their `_tag`. A lease has none of these tags.
 */
export const isWait = (decision: KeySelector.Decision): decision is Wait =>
  (decision as { readonly _tag?: unknown })._tag === "Wait"

export const isNoKeyAvailable = (decision: KeySelector.Decision): decision is NoKeyAvailable =>
  (decision as { readonly _tag?: unknown })._tag === "NoKeyAvailable"

export class Wait {
  readonly _tag = "Wait"
  // A refusal is a value here, not a failure: decorators map it like any other answer.
  constructor(readonly effect: Effect.Effect<KeySelector.Decision>) {}
}
