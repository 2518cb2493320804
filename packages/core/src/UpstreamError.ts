/**
 * The typed family of what an upstream (OpenRouter) can answer, and how the balancer treats each.
 *
 * Every error is classified exactly once, in {@link disposition}: the run loop, the strategies
 * and the gateway all read that one table rather than re-deciding per status code.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

const retryAfter = Schema.optional(Schema.DurationFromSelf)

/**
 * 401: the key is invalid or disabled.
 *
 * @since 0.1.0
 * @category Errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String
}) {}

/**
 * 402 (or 403 "Key limit exceeded"): the key, or its whole account, has no credit left.
 *
 * - `scope: "key"`: the key's own limit (`limit_source: openrouter_key_limit`); it comes back at
 *   its next `limit_reset` (00:00 UTC), given as `until` when the answer says (`resets_at`).
 * - `scope: "account"`: the account has no credit (`openrouter_credits`): every key of the account
 *   is out until credit is bought.
 * - absent: the answer did not say (treated as the key's).
 *
 * OpenRouter's short refusal for spend in flight (`openrouter_in_flight_budget`) is not this error
 * but a `RateLimited` honouring `Retry-After`.
 *
 * @since 0.1.0
 * @category Errors
 */
export class InsufficientCredits extends Schema.TaggedError<InsufficientCredits>()("InsufficientCredits", {
  message: Schema.String,
  /** @since 0.4.0 */
  scope: Schema.optional(Schema.Literal("key", "account")),
  /** When the key's limit resets (epoch ms), if the answer said. @since 0.4.0 */
  until: Schema.optional(Schema.Number)
}) {}

/**
 * 429: rate limited. `scope` says whether the limit is the key's own (a provider's limit hit
 * through this key) or the whole account's (OpenRouter's own limit, sent with `X-RateLimit-*`).
 * `retryAfter` is when the window reopens (from `X-RateLimit-Reset` when sent); `limit` is the
 * requests the window admits (`X-RateLimit-Limit`) and `resetAt` the reset itself (epoch ms), when
 * sent: what pacing learns the window from (a wait measured when the answer was read drifts by
 * however late it is reported; the instant does not).
 *
 * @since 0.1.0
 * @category Errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  message: Schema.String,
  scope: Schema.Literal("key", "account"),
  retryAfter,
  limit: Schema.optional(Schema.Int),
  resetAt: Schema.optional(Schema.Number)
}) {}

/**
 * 500, 502, 503, 524, 529 and other 5xx: the upstream or provider failed.
 *
 * @since 0.1.0
 * @category Errors
 */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", {
  message: Schema.String,
  status: Schema.Number,
  retryAfter
}) {}

/**
 * 400 with `model_not_found`, or 404: no such model or endpoint.
 *
 * @since 0.1.0
 * @category Errors
 */
export class ModelNotFound extends Schema.TaggedError<ModelNotFound>()("ModelNotFound", {
  message: Schema.String,
  model: Schema.optional(Schema.String)
}) {}

/**
 * 400, 403, 413, 422: the request itself is wrong or refused; another key would not help.
 *
 * @since 0.1.0
 * @category Errors
 */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  message: Schema.String,
  status: Schema.Number
}) {}

/**
 * 408, or no answer within the deadline.
 *
 * @since 0.1.0
 * @category Errors
 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  message: Schema.String
}) {}

/**
 * The connection failed (refused, reset, DNS), or the answer could not be read.
 *
 * @since 0.1.0
 * @category Errors
 */
export class Transport extends Schema.TaggedError<Transport>()("Transport", {
  message: Schema.String
}) {}

/**
 * The upstream answered, but not in the shape the API promises (not JSON, missing fields).
 *
 * @since 0.1.0
 * @category Errors
 */
export class InvalidResponse extends Schema.TaggedError<InvalidResponse>()("InvalidResponse", {
  message: Schema.String,
  status: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category Models
 */
export type UpstreamError =
  | Unauthorized
  | InsufficientCredits
  | RateLimited
  | ServerError
  | ModelNotFound
  | BadRequest
  | Timeout
  | Transport
  | InvalidResponse

/**
 * @since 0.1.0
 * @category Models
 */
export const UpstreamError: Schema.Union<
  [
    typeof Unauthorized,
    typeof InsufficientCredits,
    typeof RateLimited,
    typeof ServerError,
    typeof ModelNotFound,
    typeof BadRequest,
    typeof Timeout,
    typeof Transport,
    typeof InvalidResponse
  ]
> = Schema.Union(
  Unauthorized,
  InsufficientCredits,
  RateLimited,
  ServerError,
  ModelNotFound,
  BadRequest,
  Timeout,
  Transport,
  InvalidResponse
)

const tags: ReadonlySet<string> = new Set([
  "Unauthorized",
  "InsufficientCredits",
  "RateLimited",
  "ServerError",
  "ModelNotFound",
  "BadRequest",
  "Timeout",
  "Transport",
  "InvalidResponse"
])

/**
 * @since 0.1.0
 * @category Guards
 */
export const isUpstreamError = (u: unknown): u is UpstreamError =>
  typeof u === "object" && u !== null && "_tag" in u && tags.has((u as { _tag: string })._tag)

/**
 * What the balancer does after an error:
 * - `fail`: the request is at fault; give the error to the caller, no retry, no key penalty.
 * - `retry-same`: transient; the same key may be retried after a backoff.
 * - `retry-other`: the key is at fault for now; retry at once on another key.
 * - `eject`: the key cannot serve (dead or out of credit); take it out and retry on another key.
 *
 * @since 0.1.0
 * @category Models
 */
export type Disposition = "fail" | "retry-same" | "retry-other" | "eject"

/**
 * The one place each error is classified.
 *
 * @since 0.1.0
 * @category Classification
 */
export const disposition = (error: UpstreamError): Disposition => {
  switch (error._tag) {
    case "Unauthorized":
    case "InsufficientCredits":
      return "eject"
    case "RateLimited":
    case "ServerError":
    case "InvalidResponse":
      return "retry-other"
    case "Timeout":
    case "Transport":
      return "retry-same"
    case "ModelNotFound":
    case "BadRequest":
      return "fail"
  }
}

/**
 * Whether the error is the key's fault, so that health tracking should count it
 * (401, 402, 429, 5xx, timeouts; never 400 or 403).
 *
 * @since 0.1.0
 * @category Classification
 */
export const countsAgainstKey = (error: UpstreamError): boolean => disposition(error) !== "fail"

/**
 * The `Retry-After` the upstream sent with this error, if any.
 *
 * @since 0.1.0
 * @category Accessors
 */
export const retryAfterOf = (error: UpstreamError): Option.Option<Duration.Duration> =>
  (error._tag === "RateLimited" || error._tag === "ServerError") && error.retryAfter !== undefined
    ? Option.some(error.retryAfter)
    : Option.none()

/**
 * The HTTP status an error stands for (what a gateway answers with).
 *
 * @since 0.1.0
 * @category Accessors
 */
export const statusOf = (error: UpstreamError): number => {
  switch (error._tag) {
    case "Unauthorized":
      return 401
    case "InsufficientCredits":
      return 402
    case "RateLimited":
      return 429
    case "ServerError":
      return error.status
    case "ModelNotFound":
      return 404
    case "BadRequest":
      return error.status
    case "Timeout":
      return 408
    case "Transport":
      return 502
    case "InvalidResponse":
      return 502
  }
}

/**
 * What an answer said of the rate window it was counted in (OpenRouter's `X-RateLimit-*`, read by
 * `Protocol.rateLimitOf`): the requests the window admits, how many are left, when it ends (epoch ms).
 *
 * @since 0.5.0
 * @category Models
 */
export interface RateWindow {
  readonly limit: number
  readonly remaining: number | undefined
  readonly resetAt: number | undefined
}
