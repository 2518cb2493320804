// The run loop's failure value and default backoff, apart from `Balancer.ts` so that the loop
// (internal/balancer.ts) imports nothing of that module but types.
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as UpstreamError from "../UpstreamError.js"

/**
 * One failed attempt, as listed in {@link AllAttemptsFailed}.
 *
 * @since 0.1.0
 * @category Models
 */
export const Attempt = Schema.Struct({ keyId: Schema.String, error: UpstreamError.UpstreamError })

/**
 * @since 0.1.0
 * @category Models
 */
export type Attempt = typeof Attempt.Type

/**
 * Every attempt the request was allowed failed. `reason` says what stopped it: attempts ran out,
 * the retry budget was spent, or no further key became eligible before the deadline.
 *
 * @since 0.1.0
 * @category Errors
 */
export class AllAttemptsFailed extends Schema.TaggedError<AllAttemptsFailed>()("AllAttemptsFailed", {
  reason: Schema.Literal("attempts", "budget", "no-key"),
  attempts: Schema.Array(Attempt),
  retryAfter: Schema.optional(Schema.DurationFromSelf),
  /** With reason `no-key`: why no further key was eligible (the selector's own explanation). */
  noKey: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const list = this.attempts.map((a) => `${a.keyId}: ${a.error._tag}`).join(", ")
    const why =
      this.reason === "attempts"
        ? "no attempts left"
        : this.reason === "budget"
          ? "the retry budget is spent"
          : `no other key became eligible in time${this.noKey === undefined ? "" : `: ${this.noKey}`}`
    return `all ${this.attempts.length} attempts failed (${why}): ${list}`
  }
}

/**
 * The loop's failure, made without validation (it is built from values the loop holds). Validated,
 * each one compiled a Schema parser: `attempts` holds a union of error classes, whose type side
 * Schema rebuilds on every check, so its parser memo missed, ~13 new entries per failed request in
 * a WeakMap whose table never shrinks (1 MB after Overload's load, issue 14) and the CPU with them.
 */
export const gaveUp = (props: ConstructorParameters<typeof AllAttemptsFailed>[0]): AllAttemptsFailed =>
  new AllAttemptsFailed(props, true)

export const defaultBackoff: Schedule.Schedule<Duration.Duration, unknown> = Schedule.exponential(
  "25 millis"
).pipe(
  Schedule.jittered,
  Schedule.modifyDelay((d) => Duration.min(d, Duration.seconds(2)))
)
