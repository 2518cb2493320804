/**
 * Upstream: the keep-alive pools (one per base URL), what one forwarded request sends on each
 * attempt, and how an attempt's failure is told (the call itself is `upstreamCall.ts`).
 */
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as http from "node:http"
import * as Undici from "undici"
import type * as Log from "./log.js"
import type { EngineState } from "./state.js"
import * as Pool from "./upstreamPool.js"
import type { UpstreamResponse } from "./upstreamResponse.js"

export interface Upstream {
  /**
   * The pool: undici's dispatcher, one connection per call in flight (no pipelining), kept alive.
   * Measured against Node's client with a keep-alive agent in one process, 50 calls in flight:
   * about 12 µs of CPU less per call (no `ClientRequest` and `IncomingMessage` per call, no
   * listeners added to the socket and taken off again, one parser per connection); in the
   * CPU-bound gateway bench, ~30 µs per request less.
   */
  readonly dispatcher: Undici.Pool
  /**
   * Per key id, the attempts waiting in the pool's queue for a connection (nothing sent yet): a
   * 401 on the key fails them at once, so a revoked key gets no call decided before its first 401
   * came back but not yet sent (issue 14 item 3: 300+ such calls under 2,000 at once).
   */
  readonly queued: Pool.Queued
  /** The base URL's path, e.g. `/api/v1`. */
  readonly prefix: string
  /** The `Host` header (the balanced calls' headers go as a list, Host in it). */
  readonly host: string
}

/**
 * How long a connection is kept idle when the server announces no keep-alive timeout: under
 * Cloudflare's 400 s (OpenRouter's front closes idle HTTP/1.1 connections then); Node's agent kept
 * them until the server closed them.
 */
const KEEP_ALIVE_MS = 300_000

export const upstreamFor = (engine: EngineState, baseUrl: string): Upstream => {
  let u = engine.upstreams.get(baseUrl)
  if (u === undefined) {
    const url = new URL(baseUrl)
    u = {
      // Every connection may stay open: with fewer (it was 64), each lull under a load of more than
      // that many in flight closed the excess and the next burst opened them again (the chaos
      // scenario, 100 in flight: 492 new upstream connections for 2,000 requests). The deadlines
      // are the gateway's own (`deadlines.ts`): undici's timers per call are off.
      dispatcher: new Undici.Pool(url.origin, {
        connections: Pool.POOL_SOCKETS,
        pipelining: 1,
        headersTimeout: 0,
        bodyTimeout: 0,
        // A call is not "connected" (`Call.onConnect`) until its connection is up, TLS included,
        // and until then its headers deadline waits (it may be the pool's queue): the connection's
        // own setting up gets the same time, not undici's 10 s, as Node's agent counted it.
        connectTimeout: engine.config.deadlines.headersMs,
        // Idle connections kept as Node's agent kept them: 1 s under a server's `Keep-Alive:
        // timeout=N` (undici's 2 s closed every connection after each answer for N = 2), and with
        // no hint not 4 s but KEEP_ALIVE_MS (a lull of seconds reopened them all, TLS included).
        keepAliveTimeoutThreshold: 1_000,
        keepAliveTimeout: KEEP_ALIVE_MS
      }),
      queued: new Map(),
      prefix: url.pathname.replace(/\/+$/, ""),
      host: url.host
    }
    engine.upstreams.set(baseUrl, u)
  }
  return u
}

/** An upstream error answer, read whole. */
export interface ErrorAnswer {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly text: string
}

/** An attempt's failure: the key's typed error, and the upstream's own answer when it gave one. */
export interface Failed {
  readonly _tag: "Failed"
  readonly error: UpstreamError.UpstreamError
  readonly answer: ErrorAnswer | undefined
}

/** One forwarded request: what is sent upstream on each attempt, and the current attempt's call. */
export interface RequestContext {
  readonly method: "GET" | "POST"
  /** The path under the upstream's base URL, e.g. `/chat/completions`. */
  readonly suffix: string
  readonly body: Buffer | undefined
  readonly model: string | undefined
  readonly accept: string | undefined
  readonly referer: string | undefined
  readonly title: string | undefined
  /** The current attempt's upstream call, and its answer once its head is in. */
  upstream: { destroy(): void } | undefined
  response: UpstreamResponse | undefined
  /** The latest attempt's failure, if it failed: what the client is told when the balancer gives up. */
  failed: Failed | undefined
  /** Sent upstream with every attempt: the request id, and the caller's trace context unchanged. */
  readonly requestId: string
  readonly traceparent: string | undefined
  readonly tracestate: string | undefined
  /** The request's log record, when request logging is on (log.ts). */
  readonly log: Log.RequestLog | undefined
  /** Clock millis by which the answer must have started (`deadlines.requestMs` from the start). */
  readonly deadlineAt: number
  /** The key of the attempt under way, if one is. */
  attempt: string | undefined
  /** Each failed attempt's key id and error tag, in order: what a 504 names. Never a secret. */
  readonly tried: Array<{ readonly key: string; readonly error: string }>
}

/** undici's timeouts (the connection's setting up, an answer's head or body): the code, else undefined. */
export const timeoutCode = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown })?.code
  return code === "UND_ERR_HEADERS_TIMEOUT" ||
    code === "UND_ERR_CONNECT_TIMEOUT" ||
    code === "UND_ERR_BODY_TIMEOUT"
    ? code
    : undefined
}

export const transportError = (e: unknown): UpstreamError.UpstreamError => {
  const code = timeoutCode(e)
  if (code !== undefined) {
    return new UpstreamError.Timeout({ message: `upstream timed out (${code})` })
  }
  const message = e instanceof Error ? e.message : String(e)
  return new UpstreamError.Transport({
    message: Protocol.scrub(`upstream connection failed: ${message}`)
  })
}

export const failed = (
  ctx: RequestContext,
  error: UpstreamError.UpstreamError,
  answer?: ErrorAnswer
): Failed => {
  const f: Failed = { _tag: "Failed", error, answer }
  ctx.failed = f
  if (ctx.attempt !== undefined) ctx.tried.push({ key: ctx.attempt, error: error._tag })
  ctx.attempt = undefined
  return f
}

/** An upstream error answer as the key's typed failure, the answer kept beside it. */
export const upstreamFailure = (engine: EngineState, ctx: RequestContext, r: ErrorAnswer): Failed => {
  const now = engine.built.clock.unsafeCurrentTimeMillis()
  return failed(ctx, Protocol.fromResponse(r.status, r.headers, r.text, { now, model: ctx.model }), r)
}
