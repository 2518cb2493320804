/** The gateway's own small answers, in OpenAI's error shape, and the headers it passes on. */
import * as Protocol from "@or-balancer/http/Protocol"
import * as Duration from "effect/Duration"
import * as http from "node:http"

export const sendJson = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>
): void => {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers
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
) => sendJson(res, status, { error: { message, type, param: null, code } }, headers)

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
  res.writeHead(outcome.status, { ...outcome.headers, "content-length": Buffer.byteLength(outcome.body) })
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
