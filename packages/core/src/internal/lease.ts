// Leases and their one report (see `KeySelector.ts`): outcomes, the lease object, chaining
// reports, and the safe forms (`use`, `scoped`) that report on every exit.
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import type * as Key from "../Key.js"
import type * as KeySelector from "../KeySelector.js"
import type * as UpstreamError from "../UpstreamError.js"
import type { NoKeyAvailable } from "./decision.js"
import type { SelectRequest } from "./request.js"

/**
 * How an attempt ended.
 *
 * @since 0.1.0
 * @category Models
 */
export type Outcome =
  | {
      readonly _tag: "Success"
      readonly latency: Duration.Duration
      readonly cost: number | undefined
      /** What the answer said of its rate window, when it said (`X-RateLimit-*`). */
      readonly window?: UpstreamError.RateWindow | undefined
    }
  | {
      readonly _tag: "Failure"
      readonly latency: Duration.Duration
      readonly error: UpstreamError.UpstreamError
    }
  /** No verdict on the key: the attempt was interrupted, or the lease was never used. */
  | { readonly _tag: "Cancelled"; readonly latency: Duration.Duration }

/**
 * What a report answers: nothing (it is done), or an Effect still to run. Reports of the built-in
 * strategies over a state store with synchronous forms are plain functions; an Effect comes back
 * only from a strategy written as an Effect (`KeySelector.make`) or over a store without synchronous
 * forms. `KeySelector.report` runs either.
 *
 * @since 0.3.0
 * @category Models
 */
export type Reported = void | Effect.Effect<void>

/**
 * One key, handed out for one attempt.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Lease {
  readonly key: Key.Key
  /**
   * Reports how the attempt ended and gives back what the lease holds: the one report, a plain
   * function (the shape of `Clock.unsafeCurrentTimeMillis`). Call it, or `KeySelector.report`, exactly
   * once on every path (`Cancelled` when there is no verdict): `KeySelector.use`, `KeySelector.scoped` and the
   * `Balancer` do, and leases from `select` ignore a second report.
   */
  readonly unsafeReport: (outcome: Outcome) => Reported
  /** The same report as an Effect, derived from `unsafeReport`. */
  readonly report: (outcome: Outcome) => Effect.Effect<void>
}

export const success = (
  latency: Duration.DurationInput,
  cost?: number | undefined,
  window?: UpstreamError.RateWindow | undefined
): Outcome =>
  window === undefined
    ? { _tag: "Success", latency: Duration.decode(latency), cost }
    : { _tag: "Success", latency: Duration.decode(latency), cost, window }

export const failure = (latency: Duration.DurationInput, error: UpstreamError.UpstreamError): Outcome => ({
  _tag: "Failure",
  latency: Duration.decode(latency),
  error
})

export const cancelled = (latency: Duration.DurationInput = Duration.zero): Outcome => ({
  _tag: "Cancelled",
  latency: Duration.decode(latency)
})

const CANCELLED = cancelled()
const SUCCESS = success(0)

/** Whether a report left an Effect to run (most are plain and answer `undefined`: checked first, cheaply). */
export const isPending = (r: Reported): r is Effect.Effect<void> => r !== undefined && Effect.isEffect(r)

const toEffect = (r: Reported): Effect.Effect<void> => (isPending(r) ? r : Effect.void)

export const report = (lease: Lease, outcome: Outcome): Effect.Effect<void> =>
  Effect.suspend(() => toEffect(lease.unsafeReport(outcome)))

export const andReport = (first: Reported, next: () => Reported): Reported =>
  isPending(first)
    ? Effect.zipRight(
        first,
        Effect.suspend(() => toEffect(next()))
      )
    : next()

const nowhere = (): void => {}

// A class: one small object per lease, its Effect form a method rather than a closure of its own.
class Leased implements Lease {
  // Its own tag, so that telling decisions apart reads one field of one shape.
  readonly _tag = "Lease"
  constructor(
    readonly key: Key.Key,
    readonly unsafeReport: (outcome: Outcome) => Reported
  ) {}
  report(outcome: Outcome): Effect.Effect<void> {
    return report(this, outcome)
  }
}

export const lease = (key: Key.Key, unsafeReport: (outcome: Outcome) => Reported = nowhere): Lease =>
  new Leased(key, unsafeReport)

/** The one "report once" guard of the selection path: `select` hands out these. */
export const once = (inner: Lease): Lease => {
  let reported = false
  return new Leased(inner.key, (outcome) => {
    if (reported) return
    reported = true
    return inner.unsafeReport(outcome)
  })
}

export const use = <A, E, R>(
  selector: KeySelector.Service,
  request: SelectRequest,
  f: (lease: Lease) => Effect.Effect<A, E, R>,
  outcome: (exit: Exit.Exit<A, E>) => Outcome = (exit) => (Exit.isSuccess(exit) ? SUCCESS : CANCELLED)
): Effect.Effect<A, E | NoKeyAvailable, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(selector.select(request), (lease) =>
      Effect.flatMap(Effect.exit(restore(f(lease))), (exit) =>
        Effect.zipRight(lease.report(outcome(exit)), exit)
      )
    )
  )

export const scoped = (
  selector: KeySelector.Service,
  request: SelectRequest
): Effect.Effect<Lease, NoKeyAvailable, Scope.Scope> =>
  Effect.acquireRelease(selector.select(request), (lease) => lease.report(CANCELLED))
