/**
 * One call upstream with one key, on undici's dispatcher. Callbacks rather than an Effect, so the
 * fast path runs with no fiber; `callUpstream` is the Effect form for the balancer's retries.
 */
import type * as Key from "@or-balancer/core/Key"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Effect from "effect/Effect"
import { type Answer, type AnswerSink, type BodyTimer, readAnswer } from "./answer.js"
import { headOf } from "./answerHead.js"
import * as Deadlines from "./deadlines.js"
import * as Generations from "./generations.js"
import type { EngineState } from "./state.js"
import {
  type Failed,
  failed,
  type RequestContext,
  transportError,
  type Upstream,
  upstreamFailure,
  upstreamFor
} from "./upstream.js"
import * as Pool from "./upstreamPool.js"
import { headersOf, pushHeaders } from "./upstreamHeaders.js"
import { type BodySink, type Transport, UpstreamResponse } from "./upstreamResponse.js"

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
  /** The caller holds the answer back (see {@link hold}). */
  private callerHolds = false
  private headersMs = 0
  /** The request's own deadline comes before the headers one: it is this attempt's. */
  private lastMs = 0
  /** The call has a connection (undici's `onConnect`): it is being sent. */
  private connected = false
  /** Its headers deadline passed while it waited for a connection: it starts again on one. */
  private rearm = false
  private abortCall: ((e: Error) => void) | undefined = undefined
  private resumeCall: (() => void) | undefined = undefined
  /** The key's queue (see `upstreamPool.ts`) the call is in while it waits for a connection. */
  private queue: Pool.Waiting | undefined = undefined
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
    // Not yet given its connection: every call in fact, not only those in the pool's queue (undici
    // checks an idle keep-alive connection for one turn of the event loop before writing on it:
    // 0 of 2,200 calls, in turn or 50 in flight, were connected within `dispatch`).
    // The call itself goes in the queue: no closure per call.
    if (!this.connected && !this.settled) this.queue = Pool.queue(up.queued, this.keyId, this)
  }

  /** Its key answered 401 while the call waited for a connection: failed with it, never sent. */
  failQueued(error: UpstreamError.UpstreamError): void {
    this.queue = undefined
    if (this.settled) return
    this.settled = true
    this.stop()
    this.dropped = true
    this.done(failed(this.ctx, error))
  }

  private unqueue(): void {
    this.queue?.delete(this)
    this.queue = undefined
  }

  // undici's dispatch handler.

  onConnect(abort: (e?: Error) => void): void {
    this.connected = true
    this.unqueue()
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
    this.unqueue()
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
    this.unqueue()
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
  /** A chunk of the body came, or the caller reads again: the idle deadline starts again. */
  touch(): void {
    this.restartIdle(false)
  }
  /**
   * The caller stopped reading (its connection is full) and the answer is paused: from here the
   * deadline measures the caller's silence, not the upstream's, until the next {@link touch}.
   */
  hold(): void {
    this.restartIdle(true)
  }
  /** The idle deadline again from now, whose silence it measures set (none once stopped). */
  private restartIdle(callerHolds: boolean): void {
    if (this.deadlineList === undefined) return
    this.callerHolds = callerHolds
    Deadlines.disarm(this)
    Deadlines.arm(this, this.idleMs)
  }
  stop(): void {
    this.callerHolds = false
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
    const e = this.callerHolds
      ? Object.assign(new Error(`the caller read nothing for ${this.idleMs} ms`), { code: CALLER_TOO_SLOW })
      : Object.assign(new Error("upstream timed out"), { code: "UND_ERR_HEADERS_TIMEOUT" })
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
 * The code of the error a stream is cut with when its caller read nothing for `bodyIdleMs` while
 * the gateway held the upstream back for it: the caller's doing, no verdict on the key.
 */
export const CALLER_TOO_SLOW = "OR_CALLER_TOO_SLOW"

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
