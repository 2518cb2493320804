/**
 * One forwarded request, top to bottom. Most take the fast path, with no fiber: the balancer
 * leases a key synchronously (`Balancer.unsafeStart`), the upstream call and the piping run on
 * callbacks, and the outcome is reported synchronously. A fiber per request was most of the
 * gateway's CPU over a raw proxy's (measured in `examples/bench/gateway.ts`). Whatever needs
 * waiting or a retry goes to {@link forwardOnFiber}: a stack that cannot select synchronously, no
 * key eligible right now, or a first attempt that failed before any byte reached the client.
 */
import type * as Balancer from "@or-balancer/core/Balancer"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type * as http from "node:http"
import type * as Clients from "./clients.js"
import { failureAnswer } from "./failure.js"
import * as Hedge from "./hedge.js"
import { header1, openAiError, sendJson, sendOutcome } from "./respond.js"
import { sendAnswer, type Settler } from "./settle.js"
import type { EngineState } from "./state.js"
import type { Answer } from "./answer.js"
import type * as Log from "./log.js"
import * as Deadlines from "./deadlines.js"
import type { Failed, RequestContext } from "./upstream.js"
import { callUpstream } from "./upstreamCall.js"

/** How the fiber path runs a request: `Balancer.runHeld` from the start, or `Started.runHeld`. */
type HeldRun = Balancer.Started["runHeld"]

/** How the path running a request's attempt ends it: when the client goes away, at the deadline. */
export interface Hooks {
  readonly cancel: () => void
  readonly expire?: (() => void) | undefined
}

/**
 * One request from the handler on: its hooks, and its place in the request deadline's list (one
 * timer per duration, see `deadlines.ts`, instead of a `setTimeout` and a close listener each).
 */
export class Live extends Deadlines.Deadline {
  /** Set by the path that runs the request (fast, fiber, passthrough). */
  hooks: Hooks | undefined = undefined
  /** The named client's reservation, settled with the answer's cost (see `clients.ts`). */
  charge: Clients.Charge | undefined = undefined
  constructor(
    /** The request id (see log.ts), and its log record when request logging is on. */
    readonly id: string,
    readonly log: Log.RequestLog | undefined
  ) {
    super()
  }
  /** The client went away (the response or its connection closed): no deadline any more. */
  cancel(): void {
    Deadlines.disarm(this)
    this.hooks?.cancel()
  }
  expire(): void {
    this.hooks?.expire?.()
  }
}

/**
 * The 504 at the request's deadline (`deadlines.requestMs`), sent when no answer has started:
 * it names each key tried and why it failed (key ids and error tags only, never a secret).
 */
const sendDeadline = (engine: EngineState, ctx: RequestContext, res: http.ServerResponse) => {
  const attempts = ctx.tried.map((t) => ({ key: t.key, error: t.error }))
  if (ctx.attempt !== undefined) attempts.push({ key: ctx.attempt, error: "NoAnswerYet" })
  const s = engine.config.deadlines.requestMs / 1000
  const list = attempts.map((a) => `${a.key} (${a.error})`).join(", ")
  const message =
    `no answer within the request deadline of ${s} s; ` +
    (attempts.length === 0 ? "no key became eligible to try" : `tried: ${list}`)
  sendJson(res, 504, {
    error: { code: 504, message, type: "timeout", metadata: { reason: "request_deadline", attempts } }
  })
}

export const forward = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  method: "GET" | "POST",
  suffix: string,
  body: Buffer | undefined,
  request: Balancer.RunRequest
) => {
  const ctx: RequestContext = {
    method,
    suffix,
    body,
    model: request.model,
    accept: header1(req.headers.accept),
    referer: header1(req.headers["http-referer"]),
    title: header1(req.headers["x-title"]),
    upstream: undefined,
    response: undefined,
    failed: undefined,
    // Passed upstream as they came (log.ts, upstream.ts).
    requestId: live.id,
    traceparent: header1(req.headers.traceparent),
    tracestate: header1(req.headers.tracestate),
    log: live.log,
    deadlineAt: engine.built.clock.unsafeCurrentTimeMillis() + engine.config.deadlines.requestMs,
    attempt: undefined,
    tried: []
  }
  // One deadline for the whole request, across attempts and waits, until its answer starts.
  Deadlines.arm(live, engine.config.deadlines.requestMs)
  // 1. A key now, with no fiber, or the fiber path.
  const started = engine.built.balancer.unsafeStart(request)
  if (started === undefined) {
    return forwardOnFiber(engine, live, res, ctx, request, true, (use, onHeld) =>
      engine.built.balancer.runHeld(request, use, onHeld)
    )
  }
  // 2. The upstream call, hedged when it stalls (hedge.ts); 3. the answer piped and settled, or
  // the failure handed to the fiber path. The hooks are set first: a failure that goes on to the
  // fiber path at once (a call that could not be made) sets that path's own.
  const fast = new FastRequest(engine, live, res, ctx, request)
  live.hooks = fast
  const first: Hedge.Leg = { ctx, started, settler: new FastSettler(started, live) }
  fast.race = Hedge.start(engine, request, first, legFor(live), (leg, result) => fast.finish(leg, result))
}

/** The fast path's request: how its race ends, and its hooks (the client went away, the deadline). */
class FastRequest implements Hooks {
  race: Hedge.Race | undefined = undefined
  constructor(
    private readonly engine: EngineState,
    private readonly live: Live,
    private readonly res: http.ServerResponse,
    private readonly ctx: RequestContext,
    private readonly request: Balancer.RunRequest
  ) {}

  /** The attempt that decides the request: its answer is sent, or its failure goes to the fiber path. */
  finish(leg: Hedge.Leg, result: Answer | Failed): void {
    if (leg.settler.settled) return // the client went away meanwhile
    const { engine, res } = this
    if (result._tag === "Answer") return sendAnswer(engine, leg.ctx, res, result, leg.settler)
    leg.settler.unsafeFail(result.error)
    // Nothing reached the client yet: the balancer's loop goes on from this failure.
    if (!res.destroyed) {
      forwardOnFiber(engine, this.live, res, leg.ctx, this.request, false, (use, onHeld) =>
        leg.started.runHeld(use, onHeld)
      )
    }
  }

  /** The client went away: abort the upstream call (or its body) and give the key back. */
  cancel(): void {
    if (!this.res.writableFinished) this.race?.abort()
  }

  expire(): void {
    const race = this.race
    if (this.res.headersSent || race === undefined || race.settled()) return
    race.abort()
    sendDeadline(this.engine, this.ctx, this.res)
  }
}

/**
 * The fast path's settler: a class rather than an object literal of three closures over
 * `forward`'s context (measured ~15–20 µs of CPU per request less in the CPU-bound bench).
 * `sendAnswer` calls its methods on the object, never detached.
 */
class FastSettler implements Settler {
  /** Set once the attempt is settled: closing the response after that is not a disconnect. */
  settled = false
  constructor(
    private readonly started: Balancer.Started,
    private readonly live: Live
  ) {}
  unsafeSucceed(cost?: number | undefined, window?: UpstreamError.RateWindow | undefined): void {
    this.settled = true
    this.live.charge?.settle(cost, true)
    this.started.unsafeSucceed(cost, window)
  }
  unsafeFail(error: UpstreamError.UpstreamError): void {
    this.settled = true
    this.started.unsafeFail(error)
  }
  unsafeCancel(): void {
    this.settled = true
    this.started.unsafeCancel()
  }
}

/** A hedge's attempt (hedge.ts), settled as the fast path's are. */
const legFor =
  (live: Live) =>
  (started: Balancer.Started, ctx: RequestContext): Hedge.Leg => ({
    ctx,
    started,
    settler: new FastSettler(started, live)
  })

/**
 * One request on one fiber: select and call upstream through the balancer, with its waits,
 * backoff and failover; once the answer is in (a body read whole, or a stream's first event),
 * send it to the client while the fiber waits (suspended, costing nothing) for the body's end, then report the outcome, which
 * releases the lease. A client that goes away interrupts the fiber; the fiber's observer then
 * aborts the upstream call and releases the key.
 */
const forwardOnFiber = (
  engine: EngineState,
  live: Live,
  res: http.ServerResponse,
  ctx: RequestContext,
  request: Balancer.RunRequest,
  // Whether the request started here (its share of hedges is counted once: hedge.ts).
  fresh: boolean,
  // The balancer's run from the start, or from a failed synchronous first attempt (`Started.runHeld`).
  runHeld: HeldRun
) => {
  const balancer = engine.built.balancer
  // Set once the outcome is being reported: closing the response after that is not a disconnect.
  let settled = false
  const pipeOnFiber = (scoped: Balancer.Scoped<Answer>): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const settle = (effect: Effect.Effect<void>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      // A hedge answered first (and is being sent): this answer is dropped, no verdict on its key.
      if (hedge !== undefined && !hedge.claim()) {
        scoped.value.response.destroy()
        return settle(scoped.cancel)
      }
      sendAnswer(engine, ctx, res, scoped.value, {
        unsafeSucceed: (cost, window) => {
          live.charge?.settle(cost, true)
          settle(scoped.succeed(cost, window))
        },
        unsafeFail: (error) => settle(scoped.fail(error)),
        unsafeCancel: () => settle(scoped.cancel)
      })
    })
  // A hedge whose answer came first (hedge.ts): the fiber is interrupted (its observer aborts the
  // attempt under way and cancels its lease), and the hedge's answer is sent.
  const hedge = Hedge.watch(engine, request, ctx, fresh, legFor(live), (leg, answer) => {
    settled = true
    fiber.unsafeInterruptAsFork(FiberId.none)
    live.hooks = {
      cancel: () => {
        if (!res.writableFinished) hedge?.abort()
      }
    }
    sendAnswer(engine, leg.ctx, res, answer, leg.settler)
  })
  // The held answer is settled by `pipeOnFiber`, or cancelled by the observer if the fiber ends
  // any other way: no `Scope` per request (making and closing one cost ~13 µs of CPU, measured).
  let held: Balancer.Scoped<Answer> | undefined
  const program = Effect.flatMap(
    runHeld(
      (key) => {
        hedge?.attempt(key)
        return callUpstream(engine, ctx, key)
      },
      (h) => {
        held = h
      }
    ),
    pipeOnFiber
  )
  const fiber = engine.fork(program)
  // The failure answer is decided in the fiber's observer, off the success path.
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit)) return
    // Interrupted (the client went away, or a hedge answered): abort the upstream call or its answer.
    if (Cause.isInterrupted(exit.cause)) ctx.upstream?.destroy()
    // Abandoned after the hand-over: no verdict on the key. A no-op once settled.
    if (held !== undefined) engine.fork(held.cancel)
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "Some") {
      // The request has failed: a hedge still under way is given up with it.
      hedge?.abort()
      ctx.log?.giveUp(failure.value)
      settled = true
      engine.fork(failureAnswer(balancer, failure.value, ctx.failed)).addObserver((answer) => {
        if (Exit.isSuccess(answer)) sendOutcome(res, answer.value)
        else openAiError(res, 500, "internal gateway error", "server_error", null)
      })
    } else if (!Cause.isInterruptedOnly(exit.cause)) {
      openAiError(res, 500, "internal gateway error", "server_error", null)
    }
  })
  live.hooks = {
    cancel: () => {
      if (res.writableFinished || settled) return
      // The client went away: cancel the upstream call (or its body); the observer releases the key.
      hedge?.abort()
      fiber.unsafeInterruptAsFork(FiberId.none)
      ctx.response?.destroy()
    },
    expire: () => {
      if (res.headersSent || settled) return
      // The observer aborts the attempt under way and gives its key back, with no verdict.
      hedge?.abort()
      fiber.unsafeInterruptAsFork(FiberId.none)
      ctx.response?.destroy()
      sendDeadline(engine, ctx, res)
    }
  }
}
