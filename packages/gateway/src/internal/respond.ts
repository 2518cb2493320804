/** The gateway's own small answers, in OpenAI's error shape, and the headers it passes on. */
import * as Protocol from "@or-balancer/http/Protocol"
import * as Duration from "effect/Duration"
import * as http from "node:http"
import * as Log from "./log.js"
import type * as stream from "node:stream"

export const sendJson = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>
): void => {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  const id = Log.idOf(res)
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
    ...(id === undefined ? {} : { "x-request-id": id })
  })
  res.end(text)
}

export const openAiError = (
  res: http.ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null,
  headers?: Record<string, string>
) => {
  Log.setReason(res, code ?? type)
  sendJson(res, status, { error: { message, type, param: null, code } }, headers)
}

/** The answer sent when the balancer gives up. */
export interface Outcome {
  readonly _tag: "Error"
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

/** Sends a failure answer (status, headers and body as decided by `failureAnswer`). */
export const sendOutcome = (res: http.ServerResponse, outcome: Outcome) => {
  if (res.headersSent || res.destroyed) return
  const id = Log.idOf(res)
  res.writeHead(outcome.status, {
    ...outcome.headers,
    "content-length": Buffer.byteLength(outcome.body),
    ...(id === undefined ? {} : { "x-request-id": id })
  })
  res.end(outcome.body)
}

export const errorBody = (status: number, message: string, metadata?: Record<string, unknown>) =>
  JSON.stringify({ error: { code: status, message, ...(metadata === undefined ? {} : { metadata }) } })

export const header1 = (v: string | Array<string> | undefined) => (Array.isArray(v) ? v[0] : v)

const HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "proxy-connection",
  "upgrade",
  "te",
  "trailer"
])

/** A hop-by-hop header (`name` in lowercase): it is not passed on. */
export const isHopByHop = (name: string): boolean => HOP.has(name)

/** An upstream answer's headers for the client: hop-by-hop headers dropped, anything key-like cut out. */
export const copyHeaders = (h: http.IncomingHttpHeaders) => {
  const out: Record<string, string | Array<string>> = {}
  for (const name in h) {
    const v = h[name]
    if (v === undefined || HOP.has(name)) continue
    out[name] = typeof v === "string" ? Protocol.scrubHeader(v) : v.map(Protocol.scrubHeader)
  }
  return out
}

/**
 * The longest `Retry-After` the gateway sends, in seconds: an upstream's (or a cooldown's) longer
 * wait is not passed on whole (a `Retry-After: 999999` once kept clients away for 11 days); the
 * client asks again by then, and the gateway knows better.
 */
export const MAX_RETRY_AFTER_S = 300

/** A `Retry-After` header in whole seconds, at least 1, at most {@link MAX_RETRY_AFTER_S}. */
export const retryAfterHeader = (d: Duration.Duration | undefined, headers: Record<string, string>) => {
  if (d !== undefined)
    headers["retry-after"] = String(
      Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil(Duration.toSeconds(d))))
    )
}

/** Node's parser errors, by code, as the status and message the caller gets. */
const clientErrorAnswer = (code: string | undefined): readonly [number, string, string] => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return [431, "request headers are too large", "headers_too_large"]
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return [408, "the request (head and body) did not arrive in time", "request_timeout"]
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return [413, "chunk extensions are too large", "request_too_large"]
    case "HPE_INVALID_EOF_STATE":
      return [400, "the request ended before its body was complete", "invalid_request"]
    default:
      return [400, `malformed HTTP request${code === undefined ? "" : ` (${code})`}`, "invalid_request"]
  }
}

/**
 * The server's `clientError` listener: a request Node cannot parse (or that timed out) gets the
 * same OpenAI-shaped JSON error as every other 4xx, then the connection closes. Without it Node
 * writes a bare `400 Bad Request` with no body.
 */
export const answerClientError = (err: Error & { readonly code?: string }, socket: stream.Duplex): void => {
  const pending = (socket as { _httpMessage?: http.ServerResponse })._httpMessage
  if (err.code === "ECONNRESET" || !socket.writable || pending?.headersSent === true) {
    socket.destroy()
    return
  }
  const [status, message, code] = clientErrorAnswer(err.code)
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } })
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  )
}

/** The server's `checkExpectation` listener: an `Expect` other than `100-continue` is a JSON 417. */
export const answerExpectation = (_req: http.IncomingMessage, res: http.ServerResponse): void =>
  openAiError(
    res,
    417,
    "only `Expect: 100-continue` is supported",
    "invalid_request_error",
    "expectation_failed",
    {
      connection: "close"
    }
  )
