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
    "credit",
    "concurrency",
    "model",
    "ineligible"
  ),
  message: Schema.String,
  retryAfter: Schema.optional(Schema.DurationFromSelf)
}) {}

export class Wait {
  readonly _tag = "Wait"
  // A refusal is a value here, not a failure: decorators map it like any other answer.
  constructor(readonly effect: Effect.Effect<KeySelector.Decision>) {}
}
