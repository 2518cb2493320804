/**
 * What a successful-looking answer (a 2xx) says about itself: its cost, an error carried inside
 * it (in-band, in either of OpenRouter's two forms), or a body that is not what it should be.
 * Written once for the client (which decodes every chunk), the balanced `HttpClient` (which
 * watches the events go by) and the gateway (which reads only the tail of what it piped).
 */
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Classify from "./classify.js"
import * as Sse from "./sse.js"

/** The answer a 2xx's content type announces. */
export type Kind = "json" | "sse" | "other"

export const kindOf = (contentType: string | undefined): Kind =>
  contentType === undefined
    ? "other"
    : contentType.includes("text/event-stream")
      ? "sse"
      : contentType.includes("json")
        ? "json"
        : "other"

/** The info used when a chunk says `finish_reason: "error"` without an `error` object. */
export const FINISH_REASON_ERROR: Classify.ErrorInfo = {
  code: undefined,
  message: 'the stream ended with finish_reason "error"',
  errorType: undefined
}

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** The info used when a Responses stream fails (`response.failed`) without an error object. */
export const RESPONSE_FAILED: Classify.ErrorInfo = {
  code: undefined,
  message: "the response failed",
  errorType: undefined
}

/**
 * The in-band error of a parsed stream chunk, in either form: a top-level `error` field, or a
 * choice with `finish_reason: "error"` (OpenRouter sends both together; either alone counts).
 * A Responses stream has its own: an `error` event (`{ type: "error", code, message }`) and
 * `response.failed` (its `response.error`).
 */
export const chunkError = (chunk: unknown): Classify.ErrorInfo | undefined => {
  if (!isRecord(chunk)) return undefined
  if (chunk.type === "error") return Classify.errorInfo(chunk) ?? FINISH_REASON_ERROR
  if (chunk.type === "response.failed")
    return (
      (isRecord(chunk.response) ? Classify.errorInfo(chunk.response.error) : undefined) ?? RESPONSE_FAILED
    )
  if (chunk.error !== undefined && chunk.error !== null)
    return Classify.errorInfo(chunk.error) ?? FINISH_REASON_ERROR
  const choices = chunk.choices
  if (Array.isArray(choices)) {
    for (const c of choices) if (isRecord(c) && c.finish_reason === "error") return FINISH_REASON_ERROR
  }
  return undefined
}

/**
 * A whole JSON body that is an error in a 2xx (an `error` object, no `choices` or `data`). A
 * Responses answer always has an `error` field: `null` when it did not fail.
 */
export const isErrorBody = (json: unknown): boolean =>
  isRecord(json) &&
  json.error !== undefined &&
  json.error !== null &&
  !("choices" in json) &&
  !("data" in json)

/** `usage.cost` of a parsed answer or chunk. */
export const costOf = (json: unknown): number | undefined => {
  if (!isRecord(json) || !isRecord(json.usage)) return undefined
  const cost = json.usage.cost
  return typeof cost === "number" && Number.isFinite(cost) ? cost : undefined
}

/** The failure of a 2xx body that is not the JSON it should be. */
export const notJson = (status: number, detail: string): UpstreamError.InvalidResponse =>
  new UpstreamError.InvalidResponse({ message: `HTTP ${status}: ${detail}`, status })

/** The verdict on an answer: success with its cost, or the key's failure. */
export type Verdict =
  | { readonly _tag: "Success"; readonly cost: number | undefined }
  | { readonly _tag: "Failure"; readonly error: UpstreamError.UpstreamError }

/**
 * A buffered (non-streamed) 2xx JSON answer, read whole: not JSON at all is `InvalidResponse`;
 * an error object in it maps like an error status; else a success with its `usage.cost`.
 */
export const jsonVerdict = (
  status: number,
  headers: Classify.HeadersInput,
  text: string,
  options: Classify.Options = {}
): Verdict => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return {
      _tag: "Failure",
      error: notJson(
        status,
        `the body is not JSON (${text.trim() === "" ? "empty" : "cut short or not JSON"})`
      )
    }
  }
  if (isErrorBody(json))
    return { _tag: "Failure", error: Classify.fromResponse(status, headers, text, options) }
  return { _tag: "Success", cost: costOf(json) }
}

// --- Reading only the tail (the gateway's hot path) ------------------------------------------

const COST = '"cost"'
const ERROR = '"error"'

/** Whether `c` is JSON whitespace. */
const blank = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

/** The number after `"cost"` at `at`, read by hand (a regex over the tail showed in profiles). */
const numberAfter = (tail: string, at: number): number | undefined => {
  let i = at + COST.length
  while (i < tail.length && blank(tail.charCodeAt(i))) i++
  if (tail.charCodeAt(i) !== 0x3a /* : */) return undefined
  i++
  while (i < tail.length && blank(tail.charCodeAt(i))) i++
  const start = i
  while (i < tail.length) {
    const c = tail.charCodeAt(i)
    // digits, sign, point, exponent
    if ((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45) i++
    else break
  }
  if (i === start) return undefined
  const n = Number(tail.slice(start, i))
  return Number.isFinite(n) ? n : undefined
}

/** The last `"cost": n` of a tail: the final usage object is the last thing an answer sends. */
export const costInTail = (tail: string): number | undefined => {
  for (let at = tail.lastIndexOf(COST); at !== -1; at = at === 0 ? -1 : tail.lastIndexOf(COST, at - 1)) {
    const n = numberAfter(tail, at)
    if (n !== undefined) return n
  }
  return undefined
}

/**
 * The first in-band error among a streamed tail's events, in either form. `"error"` with its
 * quotes only appears in JSON as a key or as the exact value `"error"` (inside a string it would be
 * escaped), so answers without one cost a single search.
 */
export const streamErrorInTail = (tail: string): Classify.ErrorInfo | undefined => {
  if (!tail.includes(ERROR)) return undefined
  for (const line of tail.split("\n")) {
    if (!line.startsWith("data:") || !line.includes(ERROR)) continue
    let json: unknown
    try {
      json = JSON.parse(line.slice(5))
    } catch {
      continue // an event cut by the tail's start, or not JSON: not an error event we can read
    }
    const info = chunkError(json)
    if (info !== undefined) return info
  }
  return undefined
}

/** Whether the text's last non-blank character closes an object or array (a scan, not `/[}\]]\s*$/`, which backtracks over every blank run). */
export const endsLikeJson = (text: string): boolean => {
  for (let i = text.length - 1; i >= 0; i--) {
    const c = text.charCodeAt(i)
    if (c === 0x7d || c === 0x5d) return true
    if (!blank(c)) return false
  }
  return false
}

/** Whether a body's head opens an object or array. */
export const startsLikeJson = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x7b || c === 0x5b) return true
    if (!blank(c)) return false
  }
  return false
}

/** The failure of a 2xx to an API call whose content type is neither JSON nor SSE (an HTML page, say). */
export const unexpectedKind = (
  status: number,
  contentType: string | undefined
): UpstreamError.InvalidResponse =>
  notJson(
    status,
    `expected JSON, got ${contentType === undefined || contentType === "" ? "no content type" : contentType.slice(0, 60)}`
  )

/**
 * The verdict on a 2xx the gateway passed on, from its tail alone: an SSE answer fails on an
 * in-band error; a JSON answer fails when it does not end as JSON does, or carries an `error`
 * object (then it is parsed whole: `whole`, when the body was buffered); an API answer that is
 * neither (`api`: a chat, not a passed-through listing) fails; else success with the cost.
 */
export const tailVerdict = (
  status: number,
  headers: Classify.HeadersInput,
  api: boolean,
  tail: string,
  whole: string | undefined,
  options: Classify.Options = {}
): Verdict => {
  const contentType = Classify.header(headers, "content-type")
  const kind = kindOf(contentType)
  if (kind === "other" && api) return { _tag: "Failure", error: unexpectedKind(status, contentType) }
  if (kind === "sse") {
    const info = streamErrorInTail(tail)
    return info === undefined
      ? { _tag: "Success", cost: costInTail(tail) }
      : { _tag: "Failure", error: Classify.fromErrorObject(info, options) }
  }
  if (kind === "json") {
    if (!endsLikeJson(tail))
      return { _tag: "Failure", error: notJson(status, "the body is cut short or not JSON") }
    if (whole !== undefined && tail.includes(ERROR)) return jsonVerdict(status, headers, whole, options)
  }
  return { _tag: "Success", cost: costInTail(tail) }
}

/**
 * Watches a streamed body go by, event by event: the last `usage.cost`, the first in-band
 * error, and whether the first event was already an error (nothing useful was sent: a caller
 * that has not forwarded anything yet can fail over).
 */
export interface StreamWatch {
  readonly feed: (bytes: Uint8Array) => void
  readonly cost: () => number | undefined
  readonly error: () => Classify.ErrorInfo | undefined
  /** Data events seen so far (`[DONE]` excluded). */
  readonly events: () => number
}

export const makeStreamWatch = (): StreamWatch => {
  const parser = Sse.makeParser()
  const decoder = new TextDecoder()
  let cost: number | undefined
  let error: Classify.ErrorInfo | undefined
  let events = 0
  const inspect = (data: string) => {
    if (data.trim() === "[DONE]") return
    events++
    let json: unknown
    try {
      json = JSON.parse(data)
    } catch {
      return
    }
    const c = costOf(json)
    if (c !== undefined) cost = c
    if (error === undefined) error = chunkError(json)
  }
  return {
    feed: (bytes) => {
      for (const event of parser.feed(decoder.decode(bytes, { stream: true }))) inspect(event.data)
    },
    cost: () => cost,
    error: () => error,
    events: () => events
  }
}
