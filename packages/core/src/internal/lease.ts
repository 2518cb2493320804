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

export const success = (
  latency: Duration.DurationInput,
  cost?: number | undefined,
  window?: UpstreamError.RateWindow | undefined
): KeySelector.Outcome =>
  window === undefined
    ? { _tag: "Success", latency: Duration.decode(latency), cost }
    : { _tag: "Success", latency: Duration.decode(latency), cost, window }

export const failure = (
  latency: Duration.DurationInput,
  error: UpstreamError.UpstreamError
): KeySelector.Outcome => ({
  _tag: "Failure",
  latency: Duration.decode(latency),
  error
})

export const cancelled = (latency: Duration.DurationInput = Duration.zero): KeySelector.Outcome => ({
  _tag: "Cancelled",
  latency: Duration.decode(latency)
})

const CANCELLED = cancelled()
const SUCCESS = success(0)

const toEffect = (r: KeySelector.Reported): Effect.Effect<void> => (Effect.isEffect(r) ? r : Effect.void)

export const report = (lease: KeySelector.Lease, outcome: KeySelector.Outcome): Effect.Effect<void> =>
  Effect.suspend(() => toEffect(lease.unsafeReport(outcome)))

export const andReport = (
  first: KeySelector.Reported,
  next: () => KeySelector.Reported
): KeySelector.Reported =>
  Effect.isEffect(first)
    ? Effect.zipRight(
        first,
        Effect.suspend(() => toEffect(next()))
      )
    : next()

const nowhere = (): void => {}

// A class: one small object per lease, its Effect form a method rather than a closure of its own.
class Leased implements KeySelector.Lease {
  // Its own tag, so that telling decisions apart reads one field of one shape.
  readonly _tag = "Lease"
  constructor(
    readonly key: Key.Key,
    readonly unsafeReport: (outcome: KeySelector.Outcome) => KeySelector.Reported
  ) {}
  report(outcome: KeySelector.Outcome): Effect.Effect<void> {
    return report(this, outcome)
  }
}

export const lease = (
  key: Key.Key,
  unsafeReport: (outcome: KeySelector.Outcome) => KeySelector.Reported = nowhere
): KeySelector.Lease => new Leased(key, unsafeReport)

/** The one "report once" guard of the selection path: `select` hands out these. */
export const once = (inner: KeySelector.Lease): KeySelector.Lease => {
  let reported = false
  return new Leased(inner.key, (outcome) => {
    if (reported) return
    reported = true
    return inner.unsafeReport(outcome)
  })
}

export const use = <A, E, R>(
  selector: KeySelector.Service,
  request: KeySelector.SelectRequest,
  f: (lease: KeySelector.Lease) => Effect.Effect<A, E, R>,
  outcome: (exit: Exit.Exit<A, E>) => KeySelector.Outcome = (exit) =>
    Exit.isSuccess(exit) ? SUCCESS : CANCELLED
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
  request: KeySelector.SelectRequest
): Effect.Effect<KeySelector.Lease, NoKeyAvailable, Scope.Scope> =>
  Effect.acquireRelease(selector.select(request), (lease) => lease.report(CANCELLED))
