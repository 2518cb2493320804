// The Balancer's spans: `or_balancer.request` around a request's run, `or_balancer.attempt` per
// attempt (a child of it, and the parent of whatever `use` traces, e.g. the HTTP client's span).
// Made through Effect's `Tracer`, so any tracer layer (`@effect/opentelemetry`, …) receives them.
// With Effect's built-in tracer (no tracer installed) or tracing disabled on the fiber, nothing is
// made, and the look is done in the step that reads the clock anyway (no step of its own). Spans
// carry ids, tags and numbers only: an error's message may quote an upstream body, so a failed
// span ends with the error's tag, never its message.
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type * as Tracer from "effect/Tracer"
import type * as Balancer from "../Balancer.js"
import * as KeySelector from "../KeySelector.js"
import * as UpstreamError from "../UpstreamError.js"

export const REQUEST = "or_balancer.request"
export const ATTEMPT = "or_balancer.attempt"

/** Effect's own tracer: installed when the program installed none. */
const NATIVE = Effect.runSync(Effect.tracer)
const NO_LINKS: ReadonlyArray<Tracer.SpanLink> = []

const tagOf = (u: unknown): string =>
  typeof u === "object" && u !== null && typeof (u as { _tag?: unknown })._tag === "string"
    ? (u as { _tag: string })._tag
    : "Error"

const failureOf = (exit: Exit.Exit<unknown, unknown>): unknown =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

/** The exit a span ends with: the outcome, and on failure only the error's tag. */
const safeExit = (exit: Exit.Exit<unknown, unknown>): Exit.Exit<void, string> => {
  if (Exit.isSuccess(exit)) return Exit.void
  if (Exit.isInterrupted(exit)) return Exit.interrupt(FiberId.none)
  const failure = failureOf(exit)
  return Exit.fail(failure === undefined ? "defect" : tagOf(failure))
}

/** One request's span, and the attempts it makes. */
export class Trace {
  private attempts = 0
  constructor(
    private readonly tracer: Tracer.Tracer,
    private readonly now: () => bigint,
    readonly span: Tracer.Span
  ) {}

  /**
   * An attempt on `lease`: its span, and the lease to hold instead, whose one report ends the span
   * with the strategies' outcome (held answers report when they end, so the span lasts as long).
   */
  attempt(
    lease: KeySelector.Lease,
    attempt: number
  ): { readonly span: Tracer.Span; readonly lease: KeySelector.Lease } {
    this.attempts = attempt
    const span = this.tracer.span(
      ATTEMPT,
      Option.some(this.span),
      Context.empty(),
      NO_LINKS,
      this.now(),
      "internal"
    )
    span.attribute("or_balancer.key", lease.key.id)
    span.attribute("or_balancer.attempt", attempt)
    const now = this.now
    return {
      span,
      lease: KeySelector.lease(lease.key, (outcome) => {
        endAttempt(span, outcome, now())
        return lease.unsafeReport(outcome)
      })
    }
  }

  end(exit: Exit.Exit<unknown, unknown>): void {
    const span = this.span
    span.attribute("or_balancer.attempts", this.attempts)
    const failure = failureOf(exit)
    if (failure !== undefined) {
      span.attribute("or_balancer.error", tagOf(failure))
      if (tagOf(failure) === "AllAttemptsFailed")
        span.attribute("or_balancer.gave_up", (failure as { reason: string }).reason)
    }
    span.end(this.now(), safeExit(exit))
  }
}

const endAttempt = (span: Tracer.Span, outcome: KeySelector.Outcome, at: bigint) => {
  switch (outcome._tag) {
    case "Success":
      span.attribute("or_balancer.outcome", "success")
      if (outcome.cost !== undefined) span.attribute("or_balancer.cost", outcome.cost)
      return span.end(at, Exit.void)
    case "Failure":
      span.attribute("or_balancer.outcome", "failure")
      span.attribute("or_balancer.error", outcome.error._tag)
      // What the balancer does next: fail, retry the same key, fail over, or eject the key.
      span.attribute("or_balancer.retry", UpstreamError.disposition(outcome.error))
      return span.end(at, Exit.fail(outcome.error._tag))
    case "Cancelled":
      span.attribute("or_balancer.outcome", "cancelled")
      return span.end(at, Exit.void)
  }
}

/**
 * The fiber's clock and, for a `request` when a tracer is installed and enabled, its span (`body`
 * runs inside it): one step, the same as `Effect.clockWith`, so a request pays nothing more for
 * spans when there is no tracer. `undefined` for no span.
 */
export const withClock = <A, E, R>(
  request: Balancer.RunRequest | undefined,
  body: (clock: Clock.Clock, trace: Trace | undefined) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) => {
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    const tracer = fiber.currentTracer
    if (request === undefined || tracer === NATIVE || !fiber.getFiberRef(FiberRef.currentTracerEnabled))
      return body(clock, undefined)
    const now = () => clock.unsafeCurrentTimeNanos()
    return Effect.flatMap(
      Effect.makeSpan(REQUEST, {
        kind: "internal",
        captureStackTrace: false,
        attributes: request.model === undefined ? {} : { "or_balancer.model": request.model }
      }),
      (span) => {
        const trace = new Trace(tracer, now, span)
        return Effect.onExit(Effect.withParentSpan(body(clock, trace), span), (exit) =>
          Effect.sync(() => trace.end(exit))
        )
      }
    )
  })
