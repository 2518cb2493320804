// The Balancer's Effect loop over attempts: after a failed one, record it, cool the key down, and
// decide whether and when to go on (failover, a 429 waited out, backoff, the retry budget).
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import type * as Balancer from "../Balancer.js"
import type * as Key from "../Key.js"
import * as KeySelector from "../KeySelector.js"
import type * as Monitor from "../Monitor.js"
import * as UpstreamError from "../UpstreamError.js"
import { type AllAttemptsFailed, gaveUp } from "./allAttemptsFailed.js"
import type { Attempt, Started } from "./attempt.js"
import { type AttemptOnce, type Hold, RequestRun } from "./attemptOnce.js"
import type * as RetryBudget from "./retryBudget.js"
import * as Spans from "./spans.js"

/** At most this many 429s are waited out per request, so a window that keeps refusing still ends it. */
const MAX_WAITS = 16
const waitOf = (error: UpstreamError.UpstreamError): number | undefined => {
  const wait = UpstreamError.retryAfterOf(error)
  return wait._tag === "Some" ? Duration.toMillis(wait.value) : undefined
}

export const make = (deps: {
  readonly attemptOnce: AttemptOnce
  readonly coolDown: (key: Key.Key, error: UpstreamError.UpstreamError, now: number) => Effect.Effect<void>
  readonly monitor: Monitor.Service
  readonly budget: RetryBudget.RetryBudget | undefined
  readonly backoff: Schedule.Schedule<unknown, UpstreamError.UpstreamError>
  readonly maxAttempts: number
  readonly deadlineMs: number
  readonly spans: boolean
}) => {
  const { attemptOnce, backoff, budget, coolDown, deadlineMs, maxAttempts, monitor, spans } = deps

  const loop = <A, E, R, B>(
    request: Balancer.RunRequest,
    use: (key: Key.Key, info: Balancer.AttemptInfo) => Effect.Effect<A, E, R>,
    costOf: ((a: A) => number | undefined) | undefined,
    hold: Hold<A>,
    // What the caller gets from the attempt that succeeded (no extra map step after the loop).
    result: (done: Attempt<A>) => B,
    // A failed synchronous first attempt to go on from (`Started.run` / `Started.runHeld`).
    after?: Started
  ): Effect.Effect<B, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R> =>
    // The clock, and the request's span when a tracer is installed, in one step (a continued
    // request has none: its caller, the gateway, makes its own).
    Spans.withClock(spans && after === undefined ? request : undefined, (clock, trace) => {
      const start = after === undefined ? clock.unsafeCurrentTimeMillis() : after.start
      // A continued request was counted by `unsafeStart`.
      if (after === undefined) budget?.deposit(start)
      const deadlineAt = start + deadlineMs
      const run = new RequestRun(clock, request, deadlineAt, use, costOf, hold, trace)
      const attempts: Array<Balancer.Attempt> = []
      let state = backoff.initial
      // 429s waited out (see `next`): they do not count as attempts.
      let waits = 0
      const noKey = (
        e: KeySelector.NoKeyAvailable
      ): Effect.Effect<never, KeySelector.NoKeyAvailable | AllAttemptsFailed> =>
        attempts.length === 0
          ? Effect.fail(e)
          : Effect.fail(
              e.retryAfter === undefined
                ? gaveUp({ reason: "no-key", attempts, noKey: e.message })
                : gaveUp({
                    reason: "no-key",
                    attempts,
                    retryAfter: e.retryAfter,
                    noKey: e.message
                  })
            )
      const from = (
        attempt: number
      ): Effect.Effect<B, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R> =>
        // One frame for both ways out of an attempt (as `catchIf` then `flatMap`, without the second frame).
        Effect.matchCauseEffect(attemptOnce(run, attempt), {
          onFailure: (cause): Effect.Effect<never, E | AllAttemptsFailed | KeySelector.NoKeyAvailable> => {
            const failure = Cause.failureOrCause(cause)
            return failure._tag === "Left" && failure.left instanceof KeySelector.NoKeyAvailable
              ? noKey(failure.left)
              : Effect.failCause(cause)
          },
          onSuccess: (done) =>
            done.error === undefined ? Effect.succeed(result(done)) : next(attempt, done.key, done.error)
        })
      // A failed attempt: record it, cool the key down, and decide whether and when to go on.
      const next = (attempt: number, key: Key.Key, error: UpstreamError.UpstreamError) =>
        Effect.gen(function* () {
          attempts.push({ keyId: key.id, error })
          const now = yield* Clock.currentTimeMillis
          yield* coolDown(key, error, now)
          const disposition = UpstreamError.disposition(error)
          if (disposition === "fail") return yield* Effect.fail(error as E)
          // A 429 whose window's end is known, and within this request's deadline, is a wait: the
          // cooldown gate holds the key (or account) until then. It spends neither an attempt nor
          // the retry budget, which is there against storms of 5xx and resets (issue 14).
          const waitMs = error._tag === "RateLimited" ? waitOf(error) : undefined
          if (waitMs !== undefined && waitMs > 0 && now + waitMs <= deadlineAt && waits < MAX_WAITS) {
            waits++
            yield* monitor.retried
            run.reuseDelay = 0
            return yield* from(attempt + 1)
          }
          if (disposition !== "retry-same") run.tried.add(key.id)
          if (disposition === "eject") run.dead.add(key.id)
          if (attempt - waits >= maxAttempts)
            return yield* Effect.fail(gaveUp({ reason: "attempts", attempts }))
          // Failing over from a key that cannot serve (401, 402, a key limit) spends no budget
          // either: that key is taken out, so it cannot feed a storm, and the budget would
          // otherwise fail callers whenever many requests meet one dead key at once.
          if (disposition !== "eject" && budget !== undefined && !budget.tryWithdraw(now)) {
            return yield* Effect.fail(gaveUp({ reason: "budget", attempts }))
          }
          const [next, , decision] = yield* backoff.step(now, error, state)
          state = next
          if (ScheduleDecision.isDone(decision)) {
            return yield* Effect.fail(gaveUp({ reason: "attempts", attempts }))
          }
          yield* monitor.retried
          // Failing over to a key that has not failed this request is immediate; the backoff applies
          // when the same key is tried again. A Retry-After is enforced by the cooldown gate.
          const delay = Math.max(0, Intervals.start(decision.intervals) - now)
          if (disposition === "retry-same") {
            if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
            run.reuseDelay = 0
          } else {
            run.reuseDelay = delay
          }
          return yield* from(attempt + 1)
        })
      return after === undefined ? from(1) : next(1, after.key, after.error!)
    })
  return loop
}
