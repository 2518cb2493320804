// One attempt of the Balancer's Effect loop: select a key (waiting up to the deadline), run the
// caller's `use` on it, and settle the attempt by how it ended.
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Balancer from "../Balancer.js"
import type * as Key from "../Key.js"
import type * as KeySelector from "../KeySelector.js"
import type * as Monitor from "../Monitor.js"
import * as UpstreamError from "../UpstreamError.js"
import { Attempt, selectBase } from "./attempt.js"
import { CLOSED_ONLY, type ClosedKeys, MAX_GIVEN_BACK } from "./closedKeys.js"
import type { SelectWithin } from "./selectWithin.js"
import type * as Spans from "./spans.js"

/** What a successful attempt hands over besides its value: nothing (`run`), or a held lease. */
export type Hold<A> = ((held: Balancer.Scoped<A>) => Effect.Effect<void> | undefined) | undefined

/** One request's way through the loop: what each of its attempts reads, and what they leave. */
export class RequestRun<A, E, R> {
  /** Keys that failed this request: chosen again only when every eligible key has. */
  readonly tried = new Set<string>()
  /** Keys that failed it for good (401, 402): never chosen again for it. */
  readonly dead = new Set<string>()
  /** The backoff before a tried key is used again. */
  reuseDelay = 0
  constructor(
    readonly clock: Clock.Clock,
    readonly request: Balancer.RunRequest,
    readonly deadlineAt: number,
    readonly use: (key: Key.Key, info: Balancer.AttemptInfo) => Effect.Effect<A, E, R>,
    readonly costOf: ((a: A) => number | undefined) | undefined,
    readonly hold: Hold<A>,
    readonly trace: Spans.Trace | undefined
  ) {}
}

// The attempt's outcome: the attempt itself, its `error` set when the key failed it.
const succeeded = <A>(
  attempt: Attempt<A>,
  value: A,
  costOf: ((a: A) => number | undefined) | undefined,
  hold: Hold<A>
): Effect.Effect<Attempt<A>> => {
  attempt.value = value
  if (hold === undefined) return Effect.as(attempt.settleNow("Success", costOf?.(value), undefined), attempt)
  // Handed over while still uninterruptible: from here the holder settles it.
  const registered = hold(attempt)
  return registered === undefined ? Effect.succeed(attempt) : Effect.as(registered, attempt)
}

const failed = <A, E>(attempt: Attempt<A>, cause: Cause.Cause<E>): Effect.Effect<Attempt<A>, E> => {
  const failure = Option.getOrUndefined(Cause.failureOption(cause))
  if (failure !== undefined && UpstreamError.isUpstreamError(failure)) {
    attempt.error = failure
    return Effect.as(attempt.settleNow("Failure", undefined, failure), attempt)
  }
  // The caller's own error, an interruption or a defect: no verdict on the key.
  return Effect.zipRight(attempt.settleNow("Cancelled", undefined, undefined), Effect.failCause(cause))
}

export type AttemptOnce = <A, E, R>(
  run: RequestRun<A, E, R>,
  attempt: number,
  givenBack?: number
) => Effect.Effect<Attempt<A>, E | KeySelector.NoKeyAvailable, R>

export const make = (deps: {
  readonly selectWithin: SelectWithin
  readonly closed: ClosedKeys
  readonly monitor: Monitor.Service
  /** The monitor's `finished`, noting 401s for `closed`. */
  readonly attemptMonitor: Pick<Monitor.Service, "finished">
}): AttemptOnce => {
  const { attemptMonitor, closed, monitor, selectWithin } = deps

  const attemptOnce = <A, E, R>(
    run: RequestRun<A, E, R>,
    attempt: number,
    givenBack = 0
  ): Effect.Effect<Attempt<A>, E | KeySelector.NoKeyAvailable, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        selectWithin(
          run.clock,
          restore,
          selectBase(run.request, attempt, run.tried),
          run.deadlineAt,
          // Every eligible key already failed this request: back off, then reuse one, never a dead one.
          () =>
            Effect.zipRight(
              run.reuseDelay > 0 ? restore(Effect.sleep(Duration.millis(run.reuseDelay))) : Effect.void,
              selectWithin(
                run.clock,
                restore,
                selectBase(run.request, attempt, run.dead),
                run.deadlineAt,
                undefined
              )
            )
        ),
        (lease): Effect.Effect<Attempt<A>, E | KeySelector.NoKeyAvailable, R> => {
          // Closed while its decision waited: given back, and chosen again (the gate now refuses it).
          if (closed.isClosed(lease.key)) {
            closed.giveBack(lease)
            return givenBack < MAX_GIVEN_BACK
              ? attemptOnce(run, attempt, givenBack + 1)
              : Effect.fail(CLOSED_ONLY)
          }
          // Traced: the attempt's span is the parent of what `use` traces, and its lease's report ends it.
          const traced = run.trace?.attempt(lease, attempt)
          const current = new Attempt<A>(traced?.lease ?? lease, attempt, run.clock, attemptMonitor)
          const used = run.use(lease.key, { attempt })
          return Effect.zipRight(
            monitor.started(lease.key),
            Effect.matchCauseEffect(restore(traced ? Effect.withParentSpan(used, traced.span) : used), {
              onSuccess: (value) => succeeded(current, value, run.costOf, run.hold),
              onFailure: (cause) => failed(current, cause)
            })
          )
        }
      )
    )
  return attemptOnce
}
