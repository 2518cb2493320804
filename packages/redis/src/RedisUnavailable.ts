/**
 * The one error of this package: Redis could not answer in time. Callers treat it as "no
 * shared state right now" and fall back (see `LeaseKeeper`); it never means a request failed.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * - `Timeout`: no answer within the command timeout.
 * - `Disconnected`: no connection (nothing is queued offline, so this is immediate).
 * - `CircuitOpen`: recent calls failed; this one was not sent (fail fast until a trial succeeds).
 * - `Rejected`: Redis answered with an error that is not a bug of ours (LOADING, READONLY, OOM, …).
 *
 * @since 0.1.0
 * @category Errors
 */
export class RedisUnavailable extends Schema.TaggedError<RedisUnavailable>(
  "@or-balancer/redis/RedisUnavailable"
)("RedisUnavailable", {
  reason: Schema.Literal("Timeout", "Disconnected", "CircuitOpen", "Rejected"),
  /** The client's message, for logs. It never holds the password: the client is never given one in a URL. */
  detail: Schema.optional(Schema.String)
}) {}

/**
 * Whether Redis is known unreachable (not merely slow): only then may a replica act alone (a local
 * share, testing a key itself). A call that timed out may still have been applied; a few in a row
 * open the breaker, and then the calls fail as `CircuitOpen`.
 *
 * @since 0.5.0
 * @category Guards
 */
export const isUnreachable = (error: RedisUnavailable): boolean => error.reason !== "Timeout"
