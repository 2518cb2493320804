/**
 * Upstream: the keep-alive pools (one per base URL), and one call with one key. Callbacks rather
 * than an Effect, so the fast path runs with no fiber; `callUpstream` is the Effect form for the
 * balancer's retries.
 */
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import * as https from "node:https"
import * as Undici from "undici"
import { type Answer, type AnswerSink, type BodyTimer, readAnswer } from "./answer.js"
import { headOf } from "./answerHead.js"
import * as Deadlines from "./deadlines.js"
import * as Generations from "./generations.js"
import type * as Log from "./log.js"
import type { EngineState } from "./state.js"
import * as Pool from "./upstreamPool.js"
import { LeanAgent } from "./upstreamAgent.js"
import { headersOf, pushHeaders } from "./upstreamHeaders.js"
import { type BodySink, type Transport, UpstreamResponse } from "./upstreamResponse.js"

export interface Upstream {
  /**
   * The answers' pool: undici's dispatcher, one connection per call in flight (no pipelining),
   * kept alive. Measured against Node's client with a keep-alive agent in one process, 50 calls
   * in flight: about 12 µs of CPU less per call (no `ClientRequest` and `IncomingMessage` per
   * call, no listeners added to the socket and taken off again, one parser per connection).
   */
  readonly dispatcher: Undici.Pool
  /** Node's client and agent, for the routes passed through as they are (`passthrough.ts`). */
  readonly request: typeof http.request
  readonly agent: http.Agent
  /**
   * Per key id, the attempts waiting in the pool's queue for a connection (nothing sent yet): a
   * 401 on the key fails them at once, so a revoked key gets no call decided before its first 401
   * came back but not yet sent (issue 14 item 3: 300+ such calls under 2,000 at once).
   */
  readonly queued: Pool.Queued
  readonly hostname: string
  readonly port: string
  /** The base URL's path, e.g. `/api/v1`. */
  readonly prefix: string
  /** The `Host` header (the requests' headers go as a list: set here, as Node would). */
  readonly host: string
  /**
   * `""` over plain HTTP: Node's agent otherwise works out a TLS server name for every request
   * (parsing Host, testing it for an IP address), which plain HTTP never uses.
   */
  readonly servername: string | undefined
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
    const tls = url.protocol === "https:"
    // Every socket may stay free: with fewer (it was 64), each lull under a load of more than that
    // many in flight closed the excess and the next burst opened them again (the chaos scenario,
    // 100 in flight: 492 new upstream connections for 2,000 requests). LIFO keeps the busy ones warm.
    const options = {
      keepAlive: true,
      maxSockets: Pool.POOL_SOCKETS,
      maxFreeSockets: Pool.POOL_SOCKETS,
      scheduling: "lifo" as const
    }
    u = {
      // The deadlines are the gateway's own (`deadlines.ts`): undici's timers per call are off.
      // But a call is not "connected" (`Call.onConnect`) until its connection is up, TLS included,
      // and until then its headers deadline waits (it may be the pool's queue): the connection's
      // own setting up gets the same time, not undici's 10 s, as Node's agent counted it.
      dispatcher: new Undici.Pool(url.origin, {
        connections: Pool.POOL_SOCKETS,
        pipelining: 1,
        headersTimeout: 0,
        bodyTimeout: 0,
        connectTimeout: engine.config.deadlines.headersMs,
        // Idle connections kept as Node's agent kept them: 1 s under a server's `Keep-Alive:
        // timeout=N` (undici's 2 s closed every connection after each answer for N = 2), and with
        // no hint not 4 s but KEEP_ALIVE_MS (a lull of seconds reopened them all, TLS included).
        keepAliveTimeoutThreshold: 1_000,
        keepAliveTimeout: KEEP_ALIVE_MS
      }),
      request: tls ? https.request : http.request,
      agent: tls ? new https.Agent(options) : new LeanAgent(options),
      queued: new Map(),
      hostname: url.hostname,
      port: url.port,
      prefix: url.pathname.replace(/\/+$/, ""),
      host: url.host,
      servername: tls ? undefined : ""
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

export const transportError = (e: unknown): UpstreamError.UpstreamError => {
  const code = (e as { code?: unknown })?.code
  if (
    code === "UND_ERR_HEADERS_TIMEOUT" ||
    code === "UND_ERR_CONNECT_TIMEOUT" ||
    code === "UND_ERR_BODY_TIMEOUT"
  ) {
    return new UpstreamError.Timeout({ message: `upstream timed out (${code})` })
  }
  const message = e instanceof Error ? e.message : String(e)
  return new UpstreamError.Transport({
    message: Protocol.scrub(`upstream connection failed: ${message}`)
  })
}

const failed = (ctx: RequestContext, error: UpstreamError.UpstreamError, answer?: ErrorAnswer): Failed => {
  const f: Failed = { _tag: "Failed", error, answer }
  ctx.failed = f
  if (ctx.attempt !== undefined) ctx.tried.push({ key: ctx.attempt, error: error._tag })
  ctx.attempt = undefined
  return f
}

/** An upstream error answer as the key's typed failure, the answer kept beside it. */
const upstreamFailure = (engine: EngineState, ctx: RequestContext, r: ErrorAnswer): Failed => {
  const now = engine.built.clock.unsafeCurrentTimeMillis()
  return failed(ctx, Protocol.fromResponse(r.status, r.headers, r.text, { now, model: ctx.model }), r)
}

/**
 * Calls upstream with one key; `done` gets the answer (status < 400: read whole, or a stream up
 * to its first event; see `answer.ts`) or the attempt's failure, once. The failure is also kept as
 * the request's latest.
 */
export const startUpstream = (
  engine: EngineState,
  ctx: RequestContext,
  key: Key.Key,
  done: (result: Answer | Failed) => void
): void => {
  ctx.failed = undefined
  ctx.response = undefined
  ctx.attempt = key.id
  // The request log and trace record this attempt (log.ts), and the trace sets `traceparent` in
  // the headers: only then are they made as an object first; nothing when both are off.
  let headers: Record<string, string | number> | undefined
  if (ctx.log !== undefined) {
    headers = headersOf(ctx, key)
    done = ctx.log.attempt(key, headers, done)
  }
  const call = new Call(engine, ctx, key.id, done)
  // A call that cannot even be made (a key's `baseUrl` that is no URL, a header undici refuses)
  // fails here: that is the key's failure, not a throw out of the request handler (which, on
  // the fast path, would end the process with the key still leased).
  try {
    const up = upstreamFor(engine, key.baseUrl ?? engine.config.baseUrl)
    call.up = up
    // As a flat list with Host in it: no header object per request.
    const list = call.list
    list.push("host", up.host)
    if (headers === undefined) pushHeaders(list, ctx, key)
    else for (const name in headers) list.push(name, String(headers[name]))
    ctx.upstream = call
    call.send()
  } catch (e) {
    return call.onError(e as Error)
  }
  if (call.isSettled()) return
  // An attempt waits for the head at most `headersMs` (then fails over), and never past the
  // request's own deadline; after the head, at most `bodyIdleMs` between two body chunks.
  call.start(engine.config.deadlines.headersMs, ctx.deadlineAt - engine.built.clock.unsafeCurrentTimeMillis())
}

/**
 * One attempt's upstream call: undici's dispatch handler, and the attempt's timeout on the shared
 * deadline lists (`deadlines.ts`). Before the head it is a deadline of `headersMs` from the start
 * (or from when the call got a connection, if it waited in the pool's queue); after it, at most
 * `bodyIdleMs` between two body chunks: whoever reads the body calls {@link touch} per chunk and
 * {@link stop} at its end. An object with methods rather than closures made per call (under tsx
 * each named closure also costs an `Object.defineProperty`).
 */
class Call extends Deadlines.Deadline implements BodyTimer, AnswerSink, Transport, BodySink {
  up: Upstream | undefined = undefined
  /** The request's headers as a flat list, Host first. */
  readonly list: Array<string> = []
  /** Set once `done` is decided (an answer's head is in, or the attempt failed). */
  private settled = false
  /** Given up on by the gateway (`destroy`): nothing more is reported. */
  private dropped = false
  private idleMs = 0
  private headersMs = 0
  /** The request's own deadline comes before the headers one: it is this attempt's. */
  private lastMs = 0
  /** The call has a connection (undici's `onConnect`): it is being sent. */
  private connected = false
  /** Its headers deadline passed while it waited for a connection: it starts again on one. */
  private rearm = false
  private abortCall: ((e: Error) => void) | undefined = undefined
  private resumeCall: (() => void) | undefined = undefined
  /** Takes the call off the key's queue (see `upstreamPool.ts`), while it waits for a connection. */
  private unqueue: (() => void) | undefined = undefined
  /** An error answer's body, read whole. */
  private chunks: Array<Buffer> | undefined = undefined
  private res: UpstreamResponse | undefined = undefined
  /** Set while the attempt waits to send again (out of fds): its deadline ends it there. */
  private waiting: ((e: Error) => void) | undefined = undefined
  constructor(
    private readonly engine: EngineState,
    private readonly ctx: RequestContext,
    private readonly keyId: string,
    private readonly done: (result: Answer | Failed) => void
  ) {
    super()
  }

  isSettled(): boolean {
    return this.settled
  }

  /** Sends the attempt; again after a wait when the process had no fd to spare for it. */
  send(): void {
    const up = this.up!
    const ctx = this.ctx
    this.connected = false
    up.dispatcher.dispatch(
      { method: ctx.method, path: up.prefix + ctx.suffix, headers: this.list, body: ctx.body ?? null },
      this
    )
    // Only an attempt left waiting in the pool's queue: one given a free connection at once (the
    // steady state) was connected within `dispatch`, so no failer for it.
    if (!this.connected && !this.settled) {
      this.unqueue = Pool.queue(up.queued, this.keyId, (error) => {
        if (this.settled) return
        this.settled = true
        this.unqueue = undefined
        this.stop()
        this.dropped = true
        this.done(failed(ctx, error))
      })
    }
  }

  // undici's dispatch handler.

  onConnect(abort: (e?: Error) => void): void {
    this.connected = true
    this.unqueue?.()
    this.unqueue = undefined
    // Failed while it waited (its key's 401, its deadline), or given up on: nothing is sent.
    // Thrown, not `abort`ed: undici's abort also destroys the connection (a good keep-alive one,
    // nothing written on it yet), while a throw here only drops the request (client-h1.js writeH1).
    if (this.dropped) throw new Error("upstream call abandoned")
    this.abortCall = abort
    if (this.rearm) {
      this.rearm = false
      Deadlines.arm(this, this.headersMs)
    }
  }

  onHeaders(status: number, rawHeaders: Array<Buffer>, resume: () => void): boolean {
    if (this.dropped) return false
    this.resumeCall = resume
    const { ctx, engine } = this
    const raw: Array<string> = new Array(rawHeaders.length)
    for (let i = 0; i < rawHeaders.length; i++) raw[i] = rawHeaders[i]!.toString("latin1")
    const res = new UpstreamResponse(status, raw, this)
    this.res = res
    ctx.response = res
    if (status < 400) {
      this.settled = true
      // Which key made it, for a later `GET /generation?id=` (routes: generation lookups).
      const head = headOf(raw)
      const gen = head.generationId
      if (gen !== undefined) Generations.remember(engine, gen, this.keyId)
      // From here the deadline is the longest silence between two body chunks.
      this.idle(engine.config.deadlines.bodyIdleMs)
      readAnswer(engine, ctx, status, res, head, this, this)
      return true
    }
    this.chunks = []
    res.setSink(this)
    return true
  }

  onData(chunk: Buffer): boolean {
    return this.res === undefined ? true : this.res.push(chunk)
  }

  onComplete(): void {
    this.res?.finish()
  }

  onError(e: Error): void {
    const res = this.res
    if (res !== undefined) return res.fail(e)
    this.error(e)
  }

  // The body of an error answer (its sink), read whole.

  data(chunk: Buffer): void {
    this.chunks!.push(chunk)
  }
  end(): void {
    this.settled = true
    this.stop()
    const res = this.res!
    const f = upstreamFailure(this.engine, this.ctx, {
      status: res.statusCode,
      headers: res.headers,
      text: Buffer.concat(this.chunks!).toString("utf8")
    })
    this.done(f)
    if (f.error._tag === "Unauthorized") Pool.failQueued(this.up!.queued, this.keyId, f.error)
  }
  close(): void {
    this.stop()
  }

  /** The answer's transport (`upstreamResponse.ts`). */
  abort(e: Error): void {
    // The answer is given up on: its body deadline goes with it (a reader that never took it over
    // stops none, and the armed deadline held the call for `bodyIdleMs`).
    this.stop()
    this.abortCall?.(e)
  }
  resume(): void {
    this.resumeCall?.()
  }

  /** Given up on by the gateway (a hedge lost, the client left): the call ends, nothing reported. */
  destroy(): void {
    this.stop()
    this.dropped = true
    this.settled = true
    this.unqueue?.()
    this.unqueue = undefined
    const w = this.waiting
    this.waiting = undefined
    w?.(new Error("upstream call abandoned"))
    if (this.res !== undefined) return this.res.destroy()
    this.abortCall?.(new Error("upstream call abandoned"))
  }

  /** `readAnswer`'s outcomes (answer.ts); none once the gateway gave up on the call. */
  answer(answer: Answer): void {
    if (!this.dropped) this.done(answer)
  }
  fail(error: UpstreamError.UpstreamError): void {
    if (!this.dropped) this.done(failed(this.ctx, error))
  }
  broken(e: unknown): void {
    if (!this.dropped) this.done(failed(this.ctx, transportError(e)))
  }

  /** The call failed before its head (or an error answer's body broke off). */
  error(e: unknown): void {
    const ctx = this.ctx
    this.unqueue?.()
    this.unqueue = undefined
    if (this.dropped) return
    if (!this.settled && Pool.outOfFds(e)) {
      // Not the key's failure (nothing reached it): wait for a connection of the now capped pool,
      // within the attempt's deadline, charging neither the key nor the retry budget.
      Pool.capPool(this.up!.dispatcher)
      this.abortCall = undefined
      const again = setTimeout(() => {
        this.waiting = undefined
        try {
          this.send()
        } catch (e) {
          this.error(e)
        }
      }, Pool.FD_RETRY_MS)
      this.waiting = (expired) => {
        clearTimeout(again)
        this.error(expired)
      }
      return
    }
    this.stop()
    if (this.settled) return
    this.settled = true
    // Failed before it had a connection (its deadline passed in the pool's queue): still in
    // undici's queue, it is dropped when one comes, never sent for an attempt already over.
    if (!this.connected) this.dropped = true
    this.done(failed(ctx, transportError(e)))
  }

  start(headersMs: number, left: number): void {
    this.headersMs = headersMs
    if (headersMs <= left) return Deadlines.arm(this, headersMs)
    // The request's deadline comes first: this attempt's ends with it.
    this.lastMs = left
    Deadlines.arm(this, Math.max(1, left))
  }
  /** From the head on: at most `ms` between two chunks of the body. */
  private idle(ms: number): void {
    this.idleMs = ms
    Deadlines.disarm(this)
    Deadlines.arm(this, ms)
  }
  /** A chunk of the body came: the idle deadline starts again. */
  touch(): void {
    if (this.deadlineList === undefined) return
    Deadlines.disarm(this)
    Deadlines.arm(this, this.idleMs)
  }
  stop(): void {
    Deadlines.disarm(this)
  }
  expire(): void {
    // Still queued for one of the pool's connections (a burst larger than the pool): the wait is
    // the gateway's, not the key's, so the headers deadline starts again when the connection
    // comes. Failed here, the key was charged a Timeout (and could be ejected) for the gateway's
    // own queue, and the retry went to the queue's tail (Overload: thousands of 504s on a loaded
    // machine). The request's own deadline (`deadlines.requestMs`) still ends the wait.
    if (!this.connected && !this.settled && this.waiting === undefined && this.lastMs === 0) {
      this.rearm = true
      return
    }
    const e = Object.assign(new Error("upstream timed out"), { code: "UND_ERR_HEADERS_TIMEOUT" })
    const waiting = this.waiting
    this.waiting = undefined
    if (waiting !== undefined) return waiting(e)
    // After the head the answer carries the error to the code reading it.
    if (this.res !== undefined) return this.res.destroy(e)
    if (this.abortCall !== undefined) return this.abortCall(e)
    this.error(e)
  }
}

/**
 * `startUpstream` for the balancer's retries. No canceler: it would cost five more fiber steps
 * on every request. An interrupted request (the client went away) has its upstream call aborted
 * by the fiber's observer instead, and a late answer's resume is ignored by the interrupted fiber.
 */
export const callUpstream = (
  engine: EngineState,
  ctx: RequestContext,
  key: Key.Key
): Effect.Effect<Answer, UpstreamError.UpstreamError> =>
  Effect.async<Answer, UpstreamError.UpstreamError>((resume) =>
    startUpstream(engine, ctx, key, (result) =>
      resume(result._tag === "Failed" ? Effect.fail(result.error) : Effect.succeed(result))
    )
  )
