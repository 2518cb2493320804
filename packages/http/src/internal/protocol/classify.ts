/**
 * The one place where what an upstream answered (status, headers, body) becomes core's
 * `UpstreamError`. The client, the balanced HttpClient and the gateway all call into here.
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Duration from "effect/Duration"
import { scrub } from "./scrub.js"

/** Headers as any HTTP stack gives them: platform `Headers`, Node's `IncomingHttpHeaders`, a plain record. */
export type HeadersInput =
  | Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  | { readonly get: (name: string) => string | null }

export interface Options {
  /** Epoch millis (from `Clock`), needed to turn an HTTP-date `Retry-After` or `X-RateLimit-Reset` into a wait. */
  readonly now?: number | undefined
  /** The model the request asked for, named in `ModelNotFound`. */
  readonly model?: string | undefined
}

const MAX_MESSAGE = 300

const clip = (text: string): string => {
  const clean = scrub(text).replace(/\s+/g, " ").trim()
  return clean.length > MAX_MESSAGE ? `${clean.slice(0, MAX_MESSAGE)}…` : clean
}

export const header = (headers: HeadersInput, name: string): string | undefined => {
  const lower = name.toLowerCase()
  if (typeof (headers as { get?: unknown }).get === "function") {
    const v = (headers as { get: (n: string) => string | null }).get(lower)
    return v ?? undefined
  }
  const record = headers as Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  let v = record[lower]
  if (v === undefined) {
    for (const k of Object.keys(record)) {
      if (k.toLowerCase() === lower) {
        v = record[k]
        break
      }
    }
  }
  if (v === undefined) return undefined
  return typeof v === "string" ? v : v[0]
}

/** `Retry-After`: delta seconds (decimals tolerated) or an HTTP date. */
export const parseRetryAfter = (
  value: string | undefined,
  now: number | undefined
): Duration.Duration | undefined => {
  if (value === undefined) return undefined
  const v = value.trim()
  if (v === "") return undefined
  if (/^\d+(\.\d+)?$/.test(v)) return Duration.millis(Math.round(Number(v) * 1000))
  if (now === undefined) return undefined
  const at = globalThis.Date.parse(v)
  if (Number.isNaN(at)) return undefined
  return Duration.millis(Math.max(0, at - now))
}

/** `X-RateLimit-Reset` as epoch millis (the API's unit; epoch seconds tolerated). */
const rateLimitResetAt = (headers: HeadersInput): number | undefined => {
  const reset = header(headers, "x-ratelimit-reset")
  if (reset === undefined || !/^\d+$/.test(reset.trim())) return undefined
  const at = Number(reset.trim())
  return at < 1e12 ? at * 1000 : at
}

const rateLimitReset = (headers: HeadersInput, now: number | undefined): Duration.Duration | undefined => {
  const ms = rateLimitResetAt(headers)
  if (ms === undefined || now === undefined) return undefined
  return Duration.millis(Math.max(0, ms - now))
}

/** The parts of an OpenRouter error body the mapping switches on. */
export interface ErrorInfo {
  readonly code: number | string | undefined
  readonly message: string | undefined
  readonly errorType: string | undefined
  /** A 402's `metadata.limit_source`: which limit was hit (the key's, the account's, spend in flight). */
  readonly limitSource?: string | undefined
  /** A key limit's `metadata.resets_at` (ISO date): when the key's limit is whole again. */
  readonly resetsAt?: string | undefined
}

const asRecord = (u: unknown): Record<string, unknown> | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Record<string, unknown>) : undefined

/** Reads `{ error: { code, message, metadata: { error_type } } }` (or the `error` object itself). */
export const errorInfo = (error: unknown): ErrorInfo | undefined => {
  if (typeof error === "string") return { code: undefined, message: error, errorType: undefined }
  const e = asRecord(error)
  if (e === undefined) return undefined
  const metadata = asRecord(e.metadata)
  const code = typeof e.code === "number" || typeof e.code === "string" ? e.code : undefined
  const message = typeof e.message === "string" ? e.message : undefined
  const errorType =
    typeof metadata?.error_type === "string"
      ? metadata.error_type
      : typeof e.type === "string"
        ? e.type
        : undefined
  const limitSource = typeof metadata?.limit_source === "string" ? metadata.limit_source : undefined
  const resetsAt = typeof metadata?.resets_at === "string" ? metadata.resets_at : undefined
  return { code, message, errorType, limitSource, resetsAt }
}

const parseBody = (bodyText: string): { readonly json: boolean; readonly info: ErrorInfo | undefined } => {
  try {
    const parsed: unknown = JSON.parse(bodyText)
    return { json: true, info: errorInfo(asRecord(parsed)?.error) }
  } catch {
    return { json: false, info: undefined }
  }
}

const isModelNotFound = (info: ErrorInfo | undefined): boolean =>
  info !== undefined &&
  (info.errorType === "model_not_found" ||
    info.code === "model_not_found" ||
    (info.message !== undefined && /model.*(not found|does not exist)|not a valid model/i.test(info.message)))

const byType = (
  info: ErrorInfo | undefined,
  status: number,
  message: string,
  retryAfter: Duration.Duration | undefined,
  options: Options
): UpstreamError.UpstreamError | undefined => {
  switch (info?.errorType) {
    case "rate_limit_exceeded":
      return rateLimited(message, "key", retryAfter)
    case "payment_required":
      return outOfCredit(message, info, retryAfter)
    case "authentication":
      return new UpstreamError.Unauthorized({ message })
    case "permission_denied":
      return isKeyLimit(info)
        ? outOfCredit(message, info, retryAfter)
        : new UpstreamError.BadRequest({ message, status: 403 })
    case "context_length_exceeded":
      return new UpstreamError.BadRequest({ message, status: 400 })
    case "model_not_found":
      return modelNotFound(message, options)
    case "timeout":
      return new UpstreamError.Timeout({ message })
    case "provider_overloaded":
    case "provider_unavailable":
    case "server":
      return serverError(message, status >= 500 ? status : 502, retryAfter)
    default:
      return undefined
  }
}

/**
 * A 402 (or a 403 key limit), by its `limit_source`: spend in flight (`openrouter_in_flight_budget`)
 * clears in moments, so it is a short wait honouring `Retry-After`, not an ejection; the account's
 * credits (`openrouter_credits`) put every key of the account out; anything else is the key's own
 * limit, out until its `limit_reset` (`resets_at` when the answer names it).
 */
const outOfCredit = (
  message: string,
  info: ErrorInfo | undefined,
  retryAfter: Duration.Duration | undefined
): UpstreamError.UpstreamError => {
  if (info?.limitSource === "openrouter_in_flight_budget") return rateLimited(message, "key", retryAfter)
  if (info?.limitSource === "openrouter_credits")
    return new UpstreamError.InsufficientCredits({ message, scope: "account" })
  const until = info?.resetsAt === undefined ? Number.NaN : globalThis.Date.parse(info.resetsAt)
  return Number.isNaN(until)
    ? new UpstreamError.InsufficientCredits({ message, scope: "key" })
    : new UpstreamError.InsufficientCredits({ message, scope: "key", until })
}

/** OpenRouter's guides also answer a key over its limit with 403 "Key limit exceeded": the key's limit too. */
const isKeyLimit = (info: ErrorInfo | undefined): boolean =>
  info !== undefined &&
  ((info.limitSource !== undefined && info.limitSource !== "openrouter_in_flight_budget") ||
    (info.message !== undefined && /key limit exceeded/i.test(info.message)))

const rateLimited = (
  message: string,
  scope: "key" | "account",
  retryAfter: Duration.Duration | undefined,
  limit?: number | undefined,
  resetAt?: number | undefined
) => {
  const fields: {
    message: string
    scope: "key" | "account"
    retryAfter?: Duration.Duration
    limit?: number
    resetAt?: number
  } = { message, scope }
  if (retryAfter !== undefined) fields.retryAfter = retryAfter
  if (limit !== undefined) fields.limit = limit
  if (resetAt !== undefined) fields.resetAt = resetAt
  return new UpstreamError.RateLimited(fields)
}

/** `X-RateLimit-Limit`: the requests the account's window admits, when it is a positive integer. */
const rateLimitLimit = (headers: HeadersInput): number | undefined => {
  const v = header(headers, "x-ratelimit-limit")?.trim()
  if (v === undefined || !/^\d+$/.test(v)) return undefined
  const n = Number(v)
  return n > 0 && Number.isSafeInteger(n) ? n : undefined
}

/**
 * An answer's `X-RateLimit-*` (OpenRouter sends them only on its own 429s; a success carrying
 * them, from a proxy in front of it, is read too): the window's limit, what is left of it and its
 * reset; `undefined` without a valid limit.
 */
export const rateLimitOf = (headers: HeadersInput): UpstreamError.RateWindow | undefined => {
  const limit = rateLimitLimit(headers)
  if (limit === undefined) return undefined
  const left = header(headers, "x-ratelimit-remaining")?.trim()
  const remaining = left !== undefined && /^\d+$/.test(left) ? Math.min(limit, Number(left)) : undefined
  return { limit, remaining, resetAt: rateLimitResetAt(headers) }
}

const serverError = (message: string, status: number, retryAfter: Duration.Duration | undefined) =>
  retryAfter === undefined
    ? new UpstreamError.ServerError({ message, status })
    : new UpstreamError.ServerError({ message, status, retryAfter })

const modelNotFound = (message: string, options: Options) =>
  options.model === undefined
    ? new UpstreamError.ModelNotFound({ message })
    : new UpstreamError.ModelNotFound({ message, model: options.model })

const byStatus = (
  status: number,
  info: ErrorInfo | undefined,
  message: string,
  headers: HeadersInput,
  retryAfter: Duration.Duration | undefined,
  options: Options
): UpstreamError.UpstreamError => {
  switch (status) {
    case 400:
      return isModelNotFound(info)
        ? modelNotFound(message, options)
        : new UpstreamError.BadRequest({ message, status })
    case 401:
      return new UpstreamError.Unauthorized({ message })
    case 402:
      return outOfCredit(message, info, retryAfter)
    case 403:
      return isKeyLimit(info)
        ? outOfCredit(message, info, retryAfter)
        : new UpstreamError.BadRequest({ message, status })
    case 404:
      return modelNotFound(message, options)
    case 408:
      return new UpstreamError.Timeout({ message })
    case 429: {
      // OpenRouter's own limit (account-wide) comes with X-RateLimit-*; a provider's does not.
      const own =
        header(headers, "x-ratelimit-limit") !== undefined ||
        header(headers, "x-ratelimit-remaining") !== undefined ||
        header(headers, "x-ratelimit-reset") !== undefined
      // The window's end in epoch ms is exact; Retry-After is whole seconds, so up to a second late.
      return rateLimited(
        message,
        own ? "account" : "key",
        rateLimitReset(headers, options.now) ?? retryAfter,
        rateLimitLimit(headers),
        rateLimitResetAt(headers)
      )
    }
    default:
      if (status >= 500 && status <= 599) return serverError(message, status, retryAfter)
      if (status >= 400 && status <= 499) return new UpstreamError.BadRequest({ message, status })
      return new UpstreamError.InvalidResponse({ message, status })
  }
}

/**
 * Maps an upstream error answer to the typed family. Never throws, whatever the body holds; the
 * message names the status and the upstream's message (clipped, with anything key-like removed).
 */
export const fromResponse = (
  status: number,
  headers: HeadersInput,
  bodyText: string,
  options: Options = {}
): UpstreamError.UpstreamError => {
  const { info, json } = parseBody(bodyText)
  const retryAfter = parseRetryAfter(header(headers, "retry-after"), options.now)
  const upstream = info?.message !== undefined ? clip(info.message) : undefined
  if (status >= 200 && status < 300) {
    // A success status with an error body: the error's own code decides.
    if (info === undefined) {
      return new UpstreamError.InvalidResponse({
        message: `HTTP ${status}: expected an error body, got ${json ? "JSON without an error object" : "a body that is not JSON"}`,
        status
      })
    }
    return fromErrorObject(info, { ...options, retryAfter })
  }
  const detail =
    upstream !== undefined
      ? upstream
      : bodyText.trim() === ""
        ? "empty body"
        : json
          ? "no error message in the body"
          : `body is not JSON: ${clip(bodyText).slice(0, 80)}`
  const message = `HTTP ${status}: ${detail}`
  // A 400 needs the error type to tell "no such model" from a bad parameter; other statuses speak for themselves.
  return byStatus(status, info, message, headers, retryAfter, options)
}

/**
 * Maps an error object carried in a 200 answer (a streamed chunk's `error`, or a JSON body's):
 * its numeric `code` is the status it stands for, `metadata.error_type` refines it.
 */
export const fromErrorObject = (
  info: ErrorInfo,
  options: Options & { readonly retryAfter?: Duration.Duration | undefined } = {}
): UpstreamError.UpstreamError => {
  const code = typeof info.code === "number" ? info.code : Number(info.code)
  const status = Number.isInteger(code) && code >= 400 && code <= 599 ? code : undefined
  const message = `upstream error${status === undefined ? "" : ` ${status}`}: ${
    info.message === undefined ? "no message" : clip(info.message)
  }`
  const typed = byType(info, status ?? 502, message, options.retryAfter, options)
  if (typed !== undefined) return typed
  if (status !== undefined) return byStatus(status, info, message, {}, options.retryAfter, options)
  if (isModelNotFound(info)) return modelNotFound(message, options)
  // An in-band error without a usable code: the provider failed mid-answer.
  return serverError(message, 502, options.retryAfter)
}

/** A failure of the HTTP stack itself (no usable answer). */
export const fromHttpClientError = (error: HttpClientError.HttpClientError): UpstreamError.UpstreamError => {
  if (error._tag === "RequestError") {
    if (error.reason === "Transport") {
      return new UpstreamError.Transport({ message: `request failed: ${describeCause(error.cause)}` })
    }
    return new UpstreamError.Transport({ message: `request could not be sent (${error.reason})` })
  }
  return new UpstreamError.Transport({
    message: `reading the answer (HTTP ${error.response.status}) failed: ${describeCause(error.cause)}`
  })
}

const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    return clip(typeof code === "string" ? `${code} ${cause.message}` : cause.message)
  }
  return cause === undefined ? "unknown cause" : clip(String(cause))
}
