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
import { type Answer, type AnswerSink, type BodyTimer, readAnswer } from "./answer.js"
import { headOf } from "./answerHead.js"
import * as Deadlines from "./deadlines.js"
import * as Generations from "./generations.js"
import type * as Log from "./log.js"
import type { EngineState } from "./state.js"
import * as Pool from "./upstreamPool.js"
import { LeanAgent } from "./upstreamAgent.js"
import { headersOf, pushHeaders } from "./upstreamHeaders.js"

export interface Upstream {
  readonly request: typeof http.request
  readonly agent: http.Agent
  /**
   * Per key id, the attempts waiting in the agent's queue for a socket (nothing sent yet): a 401
   * on the key fails them at once, so a revoked key gets no call decided before its first 401
   * came back but not yet sent (issue 14 item 3: 300+ such calls under 2,000 at once).
   */
  readonly queued: Pool.Queued
  readonly hostname: string
  readonly port: string
  /** The base URL's path, e.g. `/api/v1`. */
  readonly prefix: string
  /** The `Host` header (the requests' headers go as a list, so Node does not add it). */
  readonly host: string
  /**
   * `""` over plain HTTP: Node's agent otherwise works out a TLS server name for every request
   * (parsing Host, testing it for an IP address), which plain HTTP never uses.
   */
  readonly servername: string | undefined
}

export const upstreamFor = (engine: EngineState, baseUrl: string): Upstream => {
  let u = engine.upstreams.get(baseUrl)
  if (u === undefined) {
    const url = new URL(baseUrl)
    const tls = url.protocol === "https:"
    // Measured: node's client with a keep-alive agent answers sooner than undici's Pool here.
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
  upstream: http.ClientRequest | undefined
  response: http.IncomingMessage | undefined
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
  // A call that cannot even be made (a key's `baseUrl` that is no URL, a header Node refuses)
  // throws here: that is the key's failure, not a throw out of the request handler (which, on
  // the fast path, would end the process with the key still leased).
  try {
    const up = upstreamFor(engine, key.baseUrl ?? engine.config.baseUrl)
    call.up = up
    // As a flat list with Host in it: Node writes a list straight into the head (validating each
    // header as it does), with no header map kept per request; an object goes through `setHeader`.
    const list = call.list
    list.push("host", up.host)
    if (headers === undefined) pushHeaders(list, ctx, key)
    else for (const name in headers) list.push(name, String(headers[name]))
    call.send()
  } catch (e) {
    return done(failed(ctx, transportError(e)))
  }
  // An attempt waits for the head at most `headersMs` (then fails over), and never past the
  // request's own deadline; after the head, at most `bodyIdleMs` between two body chunks.
  call.start(engine.config.deadlines.headersMs, ctx.deadlineAt - engine.built.clock.unsafeCurrentTimeMillis())
}

/**
 * One attempt's upstream call, and its timeout on the shared deadline lists (`deadlines.ts`)
 * rather than the socket's (`req.setTimeout`: a `Timeout` and several listeners per call, and a
 * refresh on every read and write of the socket). Before the head it is a deadline of `headersMs`
 * from the start (the socket's was `headersMs` of silence, the same once the request is written);
 * after it, at most `bodyIdleMs` between two body chunks: whoever reads the body calls
 * {@link touch} per chunk and {@link stop} at its end. An object with methods rather than
 * closures made per call (under tsx each named closure also costs an `Object.defineProperty`).
 */
class Call extends Deadlines.Deadline implements BodyTimer, AnswerSink {
  up: Upstream | undefined = undefined
  /** The request's headers as a flat list, Host first. */
  readonly list: Array<string> = []
  req: http.ClientRequest | undefined = undefined
  /** Set once `done` is decided (an answer's head is in, or the attempt failed). */
  private settled = false
  private idleMs = 0
  private headersMs = 0
  private onSocket = false
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

  /** Sends the attempt; again after a wait when the process had no fd to spare for it. */
  send(): void {
    const up = this.up!
    const ctx = this.ctx
    const req = up.request(
      {
        agent: up.agent,
        hostname: up.hostname,
        port: up.port,
        method: ctx.method,
        path: up.prefix + ctx.suffix,
        headers: this.list,
        // Undefined over TLS: Node's own server name then, as before.
        servername: up.servername
      } as http.RequestOptions,
      (res) => this.response(res)
    )
    this.req = req
    req.on("error", (e) => this.error(e))
    // Only an attempt left waiting in the agent's queue: one given a free keep-alive socket at
    // once (the steady state) was never queued, so no failer and no listeners for it.
    if (!(req as { reusedSocket?: boolean }).reusedSocket) {
      Pool.queue(up.queued, this.keyId, req, (error) => {
        if (this.settled) return
        this.settled = true
        this.stop()
        req.destroy()
        this.done(failed(ctx, error))
      })
    }
    req.end(ctx.body)
    ctx.upstream = req
  }

  private response(res: http.IncomingMessage): void {
    const { ctx, engine } = this
    const status = res.statusCode ?? 502
    ctx.response = res
    if (status < 400) {
      this.settled = true
      // Which key made it, for a later `GET /generation?id=` (routes: generation lookups).
      const head = headOf(res.rawHeaders)
      const gen = head.generationId
      if (gen !== undefined) Generations.remember(engine, gen, this.keyId)
      // From here the deadline is the longest silence between two body chunks.
      this.idle(engine.config.deadlines.bodyIdleMs)
      return readAnswer(engine, ctx, status, res, head, this, this)
    }
    const chunks: Array<Buffer> = []
    res.on("data", (c: Buffer) => chunks.push(c))
    res.on("end", () => {
      this.settled = true
      this.stop()
      const f = upstreamFailure(engine, ctx, {
        status,
        headers: res.headers,
        text: Buffer.concat(chunks).toString("utf8")
      })
      this.done(f)
      if (f.error._tag === "Unauthorized") Pool.failQueued(this.up!.queued, this.keyId, f.error)
    })
    res.on("error", (e) => {
      this.stop()
      if (this.settled) return
      this.settled = true
      this.done(failed(ctx, transportError(e)))
    })
  }

  /** `readAnswer`'s outcomes (answer.ts). */
  answer(answer: Answer): void {
    this.done(answer)
  }
  fail(error: UpstreamError.UpstreamError): void {
    this.done(failed(this.ctx, error))
  }
  broken(e: unknown): void {
    this.done(failed(this.ctx, transportError(e)))
  }

  private error(e: unknown): void {
    const { ctx, engine } = this
    if (!this.settled && Pool.outOfFds(e) && ctx.response === undefined) {
      // Not the key's failure (nothing reached it): wait for a socket of the now capped pool,
      // within the attempt's deadline, charging neither the key nor the retry budget.
      Pool.capPool(this.up!.agent)
      this.req = undefined
      const again = setTimeout(() => {
        this.waiting = undefined
        try {
          this.send()
          this.resent(ctx.deadlineAt - engine.built.clock.unsafeCurrentTimeMillis())
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
    this.done(failed(ctx, transportError(e)))
  }

  /** The attempt was sent again: a deadline on the socket moves to the new request. */
  private resent(left: number): void {
    if (this.onSocket) this.req?.setTimeout(Math.max(1, left), () => this.expire())
  }
  start(headersMs: number, left: number): void {
    this.headersMs = headersMs
    if (headersMs <= left) return Deadlines.arm(this, headersMs)
    // The request's deadline comes first: this attempt's ends with it (rare: the socket's timer).
    this.onSocket = true
    this.req?.setTimeout(Math.max(1, left), () => this.expire())
  }
  /** From the head on: at most `ms` between two chunks of the body. */
  private idle(ms: number): void {
    if (this.onSocket) {
      this.onSocket = false
      this.req?.setTimeout(0)
    }
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
    const req = this.req
    // Still queued for one of the pool's sockets (a burst larger than the pool): the wait is the
    // gateway's, not the key's, so the headers deadline starts again when the socket comes. Failed
    // here, the key was charged a Timeout (and could be ejected) for the gateway's own queue, and the
    // retry went to the queue's tail (Overload: thousands of 504s on a loaded machine). The request's
    // own deadline (`deadlines.requestMs`) still ends the wait.
    if (req !== undefined && req.socket === null && this.waiting === undefined && !req.destroyed) {
      req.once("socket", () => {
        if (this.req === req && !req.destroyed) Deadlines.arm(this, this.headersMs)
      })
      return
    }
    const e = Object.assign(new Error("upstream timed out"), { code: "UND_ERR_HEADERS_TIMEOUT" })
    const waiting = this.waiting
    this.waiting = undefined
    if (waiting !== undefined) return waiting(e)
    this.req?.destroy(e)
    // After the head the response stream carries the error to the code reading it.
    this.ctx.response?.destroy(e)
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
