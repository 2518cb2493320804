/**
 * OpenRouter's protocol facts, written once: how an answer is classified, the affinity id of a
 * request, the cost of an answer, and secret scrubbing. `OpenRouterClient`, `BalancedHttpClient`
 * and the gateway all read answers through this module, so the same answer gets the same verdict
 * whichever way it came (a shared table of fixtures checks it).
 *
 * Classification (an error status or an error object in a 2xx; see {@link ErrorMapping} for the
 * status table):
 * - `metadata.error_type` refines the status when present;
 * - a 429 sent with `X-RateLimit-*` is OpenRouter's own, account-wide limit; without, a provider's;
 * - a 402's `metadata.limit_source`: `openrouter_in_flight_budget` is a short wait honouring
 *   `Retry-After` (`RateLimited`), the key's limit or the account's credits put the key out
 *   (`InsufficientCredits`); a 403 "Key limit exceeded" is the key's limit too;
 * - an in-band stream error in either form (a top-level `error` field in an event, or a choice with
 *   `finish_reason: "error"`), the first event of a 200 stream included;
 * - a 2xx that is not the JSON it should be (an HTML page, a body cut short) is `InvalidResponse`.
 *
 * @since 0.2.0
 */
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as affinity from "./internal/protocol/affinity.js"
import * as answer from "./internal/protocol/answer.js"
import * as classify from "./internal/protocol/classify.js"
import * as scrubbing from "./internal/protocol/scrub.js"

/**
 * @since 0.2.0
 * @category Models
 */
export type HeadersInput = classify.HeadersInput

/**
 * @since 0.2.0
 * @category Models
 */
export interface Options {
  /** Epoch millis (from `Clock`): needed for an HTTP-date `Retry-After` or `X-RateLimit-Reset`. */
  readonly now?: number | undefined
  /** The requested model, named in `ModelNotFound`. */
  readonly model?: string | undefined
}

/**
 * The parts of an OpenRouter error object the classification switches on.
 *
 * @since 0.2.0
 * @category Models
 */
export type ErrorInfo = classify.ErrorInfo

/**
 * The verdict on an answer: a success with its `usage.cost`, or the key's typed failure.
 *
 * @since 0.2.0
 * @category Models
 */
export type Verdict = answer.Verdict

/**
 * What a 2xx's content type announces: `json`, `sse` (`text/event-stream`) or `other`.
 *
 * @since 0.2.0
 * @category Models
 */
export type Kind = answer.Kind

// --- Classification --------------------------------------------------------------------------

/**
 * An error answer (status, headers, body text) as one `UpstreamError`. Never throws; the message
 * is clipped and holds no key.
 *
 * @since 0.2.0
 * @category Classification
 */
export const fromResponse: (
  status: number,
  headers: HeadersInput,
  bodyText: string,
  options?: Options
) => UpstreamError.UpstreamError = classify.fromResponse

/**
 * An error object carried inside an answer that already said 200 (an in-band stream error).
 *
 * @since 0.2.0
 * @category Classification
 */
export const fromErrorObject: (info: ErrorInfo, options?: Options) => UpstreamError.UpstreamError =
  classify.fromErrorObject

/**
 * Reads `{ code, message, metadata: { error_type, limit_source } }`.
 *
 * @since 0.2.0
 * @category Classification
 */
export const errorInfo: (error: unknown) => ErrorInfo | undefined = classify.errorInfo

/**
 * The content type's kind.
 *
 * @since 0.2.0
 * @category Classification
 */
export const kindOf: (contentType: string | undefined) => Kind = answer.kindOf

/**
 * The in-band error of a parsed stream event, in either form, or `undefined`.
 *
 * @since 0.2.0
 * @category Classification
 */
export const chunkError: (chunk: unknown) => ErrorInfo | undefined = answer.chunkError

/**
 * Whether a parsed 2xx JSON body is an error (an `error` object and no `choices` or `data`).
 *
 * @since 0.2.0
 * @category Classification
 */
export const isErrorBody: (json: unknown) => boolean = answer.isErrorBody

/**
 * A whole, buffered 2xx JSON body: `InvalidResponse` if it is not JSON, the error it carries if
 * any, else a success with its cost.
 *
 * @since 0.2.0
 * @category Classification
 */
export const jsonVerdict: (
  status: number,
  headers: HeadersInput,
  text: string,
  options?: Options
) => Verdict = answer.jsonVerdict

/**
 * A 2xx to an API call whose content type is neither JSON nor an event stream.
 *
 * @since 0.2.0
 * @category Classification
 */
export const unexpectedKind: (
  status: number,
  contentType: string | undefined
) => UpstreamError.InvalidResponse = answer.unexpectedKind

/**
 * The verdict on a 2xx from the last few kilobytes of its body (and the whole body when it was
 * buffered): for a server that pipes answers and cannot afford to parse them. `api` says the
 * answer must be JSON or an event stream.
 *
 * @since 0.2.0
 * @category Classification
 */
export const tailVerdict: (
  status: number,
  headers: HeadersInput,
  api: boolean,
  tail: string,
  whole: string | undefined,
  options?: Options
) => Verdict = answer.tailVerdict

/**
 * The first in-band error among the events of a streamed body's text (whole or its tail).
 *
 * @since 0.2.0
 * @category Classification
 */
export const streamError: (text: string) => ErrorInfo | undefined = answer.streamErrorInTail

/**
 * Watches a streamed body's bytes as they pass: the last `usage.cost`, the first in-band error
 * and the number of data events.
 *
 * @since 0.2.0
 * @category Classification
 */
export const makeStreamWatch: () => answer.StreamWatch = answer.makeStreamWatch

/**
 * @since 0.2.0
 * @category Models
 */
export type StreamWatch = answer.StreamWatch

/**
 * `Retry-After`: delta seconds, or an HTTP date (relative to `now`, epoch millis).
 *
 * @since 0.2.0
 * @category Classification
 */
export const parseRetryAfter = classify.parseRetryAfter

/**
 * An answer's `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch ms): what its account's window
 * admits, what is left, when it ends. Read on successes too, so pacing knows a window before its
 * first 429 (`KeySelector.success(latency, cost, window)`).
 *
 * @since 0.5.0
 * @category Classification
 */
export const rateLimitOf: (headers: HeadersInput) => UpstreamError.RateWindow | undefined =
  classify.rateLimitOf

/**
 * One header from any HTTP stack's headers, case-insensitively.
 *
 * @since 0.2.0
 * @category Classification
 */
export const header: (headers: HeadersInput, name: string) => string | undefined = classify.header

// --- Affinity and cost -----------------------------------------------------------------------

/**
 * The request's affinity id for sticky routing: `session_id`, else `prompt_cache_key`, else
 * `user`; an empty string is no id.
 *
 * @since 0.2.0
 * @category Accessors
 */
export const affinityOf: (request: {
  readonly session_id?: unknown
  readonly prompt_cache_key?: unknown
  readonly user?: unknown
}) => string | undefined = affinity.affinityOf

/**
 * The USD cost of a parsed answer or chunk (`usage.cost`).
 *
 * @since 0.2.0
 * @category Accessors
 */
export const costOf: (json: unknown) => number | undefined = answer.costOf

/**
 * The last `"cost": n` of a body's tail (the final usage object), read without parsing.
 *
 * @since 0.2.0
 * @category Accessors
 */
export const costInTail: (tail: string) => number | undefined = answer.costInTail

// --- Secrets ---------------------------------------------------------------------------------

/**
 * Cuts anything shaped like an OpenRouter key (`sk-or-…`, whole, `Bearer `-prefixed or
 * URL-encoded) down to `sk-or-…`.
 *
 * @since 0.2.0
 * @category Secrets
 */
export const scrub: (text: string) => string = scrubbing.scrub

/**
 * `scrub` for a header value: the same, with an ASCII mask (`sk-or-***`), as a header cannot carry `…`.
 *
 * @since 0.2.0
 * @category Secrets
 */
export const scrubHeader: (value: string) => string = scrubbing.scrubHeader

/**
 * `scrub` on bytes; the same buffer when there was nothing to cut.
 *
 * @since 0.2.0
 * @category Secrets
 */
export const scrubBytes: (bytes: Buffer) => Buffer = scrubbing.scrubBytes

/**
 * Whether a text may hold a key (a cheap test).
 *
 * @since 0.2.0
 * @category Secrets
 */
export const mayHoldKey: (text: string) => boolean = scrubbing.mayHoldKey

/**
 * A scrubber for a stream: a key split across chunks is cut too (the tail of a chunk that may
 * begin a key is held until the next).
 *
 * @since 0.2.0
 * @category Secrets
 */
export const makeStreamScrubber: () => StreamScrubber = scrubbing.makeStreamScrubber

/**
 * @since 0.2.0
 * @category Secrets
 */
export type StreamScrubber = scrubbing.StreamScrubber
