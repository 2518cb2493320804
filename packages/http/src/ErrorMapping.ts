/**
 * How an OpenRouter answer maps to core's typed `UpstreamError` family: status, the error body's
 * `metadata.error_type`, `Retry-After` (seconds or an HTTP date), and whether a 429 is
 * OpenRouter's own, account-wide limit (sent with `X-RateLimit-*`) or a provider's.
 *
 * Pure functions, shared by the client, the balanced `HttpClient` and the gateway, so every
 * answer is classified the same way everywhere. Messages are clipped and never hold a key. The
 * rest of OpenRouter's protocol (in-band errors, cost, affinity, scrubbing) is in `Protocol`.
 *
 * | status | error |
 * |---|---|
 * | 400 (`model_not_found`) / 404 | `ModelNotFound` |
 * | 400 / 403 / 413 / 422 / other 4xx | `BadRequest` |
 * | 401 | `Unauthorized` |
 * | 402, 403 "Key limit exceeded" | `InsufficientCredits` (`RateLimited` for `limit_source: openrouter_in_flight_budget`) |
 * | 408 | `Timeout` |
 * | 429 | `RateLimited` (`account` with `X-RateLimit-*`, else `key`) |
 * | 5xx | `ServerError` |
 *
 * @since 0.1.0
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import type * as Duration from "effect/Duration"
import * as internal from "./internal/protocol/classify.js"
import * as scrubbing from "./internal/protocol/scrub.js"

/**
 * Response headers from any HTTP stack: platform `Headers`, Node's `IncomingHttpHeaders`, a
 * plain record (looked up case-insensitively), or a fetch `Headers`.
 *
 * @since 0.1.0
 * @category Models
 */
export type HeadersInput = internal.HeadersInput

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** Epoch millis (from `Clock`): needed for an HTTP-date `Retry-After` or `X-RateLimit-Reset`. */
  readonly now?: number | undefined
  /** The requested model, named in `ModelNotFound`. */
  readonly model?: string | undefined
}

/**
 * Maps an error answer (status, headers, body text) to one `UpstreamError`. A body that is not
 * JSON or has no error object still maps by status; a 2xx status with no error object is an
 * `InvalidResponse`.
 *
 * @since 0.1.0
 * @category Mapping
 */
export const fromResponse: (
  status: number,
  headers: HeadersInput,
  bodyText: string,
  options?: Options
) => UpstreamError.UpstreamError = internal.fromResponse

/**
 * The `error` object of an answer that already said 200 (a streamed chunk's in-band error).
 *
 * @since 0.1.0
 * @category Mapping
 */
export const fromInBandError = (error: unknown, options?: Options): UpstreamError.UpstreamError =>
  internal.fromErrorObject(
    internal.errorInfo(error) ?? { code: undefined, message: undefined, errorType: undefined },
    options
  )

/**
 * A failure of the HTTP stack (connection refused or reset, body unreadable): `Transport`.
 *
 * @since 0.1.0
 * @category Mapping
 */
export const fromHttpClientError: (error: HttpClientError.HttpClientError) => UpstreamError.UpstreamError =
  internal.fromHttpClientError

/**
 * Parses `Retry-After`: delta seconds, or an HTTP date (relative to `now`, epoch millis).
 *
 * @since 0.1.0
 * @category Mapping
 */
export const parseRetryAfter: (
  value: string | undefined,
  now: number | undefined
) => Duration.Duration | undefined = internal.parseRetryAfter

/**
 * Removes anything that looks like an OpenRouter key from a text.
 *
 * @since 0.1.0
 * @category Mapping
 */
export const scrub: (text: string) => string = scrubbing.scrub
