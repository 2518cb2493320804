/**
 * The gateway's spans: one per request (kind `server`, continuing an incoming `traceparent`) and
 * one per upstream attempt (kind `client`: key id, attempt number, status, outcome, cost, and why
 * it failed over), whose context is the `traceparent` sent upstream. Made through Effect's
 * `Tracer` (so whatever tracer the program installed, e.g. `@effect/opentelemetry`'s, exports
 * them), synchronously: the fast path has no fiber. Only when a tracer other than Effect's
 * built-in one is installed; otherwise nothing here runs and an incoming `traceparent` is
 * passed upstream unchanged.
 */
import type * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Tracer from "effect/Tracer"
import type * as http from "node:http"

/** Effect's own tracer: spans that go nowhere. With it installed, the gateway makes none. */
const NATIVE = Effect.runSync(Effect.tracer)

/** The installed tracer, or `undefined` when it is Effect's built-in one (tracing off). */
export const installed: Effect.Effect<Tracer.Tracer | undefined> = Effect.map(Effect.tracer, (t) =>
  t === NATIVE ? undefined : t
)

const NO_LINKS: ReadonlyArray<Tracer.SpanLink> = []

const failure = (message: string) => Exit.fail(new Error(Protocol.scrub(message)))

/** One request's spans. */
export class RequestTrace {
  readonly span: Tracer.Span
  private attempt: Tracer.Span | undefined = undefined
  private attempts = 0

  constructor(
    private readonly tracer: Tracer.Tracer,
    private readonly clock: Clock.Clock,
    req: http.IncomingMessage,
    route: string,
    id: string
  ) {
    // The caller's context: W3C `traceparent` only (the header this gateway passes on).
    const parent = HttpTraceContext.w3c(req.headers as unknown as Headers.Headers)
    this.span = tracer.span(
      `${req.method} ${route}`,
      parent,
      Context.empty(),
      NO_LINKS,
      clock.unsafeCurrentTimeNanos(),
      "server"
    )
    this.span.attribute("http.request.method", req.method)
    this.span.attribute("http.route", route)
    this.span.attribute("or_balancer.request_id", id)
  }

  /** An attempt starts: its span, a child of the request's, is the context sent upstream. */
  startAttempt(key: Key.Key, headers: Record<string, string | number>): void {
    this.attempts++
    const span = this.tracer.span(
      "or_balancer.attempt",
      Option.some(this.span),
      Context.empty(),
      NO_LINKS,
      this.clock.unsafeCurrentTimeNanos(),
      "client"
    )
    span.attribute("or_balancer.key", key.id)
    span.attribute("or_balancer.attempt", this.attempts)
    this.attempt = span
    headers.traceparent = `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`
  }

  status(status: number | undefined): void {
    if (status !== undefined) this.attempt?.attribute("http.response.status_code", status)
  }

  /** The attempt failed: its error, and what the balancer does about it (fail over, retry, eject). */
  failAttempt(error: UpstreamError.UpstreamError): void {
    const span = this.attempt
    if (span === undefined) return
    this.attempt = undefined
    span.attribute("or_balancer.outcome", "failure")
    span.attribute("or_balancer.error", error._tag)
    span.attribute("or_balancer.retry", UpstreamError.disposition(error))
    span.end(this.clock.unsafeCurrentTimeNanos(), failure(`${error._tag}: ${error.message}`))
  }

  /** The attempt's answer was sent: `success` (with its cost) or `cancelled` (the client left). */
  endAttempt(outcome: "success" | "cancelled", cost: number | undefined): void {
    const span = this.attempt
    if (span === undefined) return
    this.attempt = undefined
    span.attribute("or_balancer.outcome", outcome)
    if (cost !== undefined) span.attribute("or_balancer.cost", cost)
    span.end(this.clock.unsafeCurrentTimeNanos(), Exit.void)
  }

  /** The response closed. */
  end(
    status: number,
    finished: boolean,
    model: string | undefined,
    cost: number | undefined,
    gaveUp: string | undefined
  ): void {
    const now = this.clock.unsafeCurrentTimeNanos()
    // An attempt still open (the client left mid-answer) ends with the request.
    if (this.attempt !== undefined) this.endAttempt("cancelled", undefined)
    const span = this.span
    span.attribute("http.response.status_code", status)
    span.attribute("or_balancer.attempts", this.attempts)
    if (model !== undefined) span.attribute("or_balancer.model", Protocol.scrub(model))
    if (cost !== undefined) span.attribute("or_balancer.cost", cost)
    if (gaveUp !== undefined) span.attribute("or_balancer.gave_up", gaveUp)
    span.end(
      now,
      !finished ? Exit.interrupt(FiberId.none) : status >= 500 ? failure(`status ${status}`) : Exit.void
    )
  }
}
