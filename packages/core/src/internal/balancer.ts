import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import * as Scope from "effect/Scope"
import type * as Balancer from "../Balancer.js"
import type * as Key from "../Key.js"
import * as KeyPool from "../KeyPool.js"
import * as KeySelector from "../KeySelector.js"
import * as Monitor from "../Monitor.js"
import * as StateStore from "../StateStore.js"
import * as UpstreamError from "../UpstreamError.js"
import { type AllAttemptsFailed, defaultBackoff, gaveUp } from "./allAttemptsFailed.js"
import { Attempt, type Continue, scopedOf, selectBase, Started, valueOf } from "./attempt.js"
import { CLOSED_ONLY, ClosedKeys, MAX_GIVEN_BACK } from "./closedKeys.js"
import * as Cooldowns from "./cooldowns.js"
import * as RetryBudget from "./retryBudget.js"
import * as Spans from "./spans.js"

const NOTHING_TRIED: ReadonlySet<string> = new Set()
/** At most this many 429s are waited out per request, so a window that keeps refusing still ends it. */
const MAX_WAITS = 16
const waitOf = (error: UpstreamError.UpstreamError): number | undefined => {
  const wait = UpstreamError.retryAfterOf(error)
  return wait._tag === "Some" ? Duration.toMillis(wait.value) : undefined
}

export const make = (options: Balancer.Options = {}) =>
  Effect.gen(function* () {
    const selector = yield* KeySelector.KeySelector
    const pool = yield* KeyPool.KeyPool
    const monitor = yield* Monitor.Monitor
    const store = yield* StateStore.StateStore
    const ownClock = yield* Effect.clock
    const maxAttempts = Math.max(1, options.maxAttempts ?? 4)
    const backoff = (options.backoff ?? defaultBackoff) as Schedule.Schedule<
      unknown,
      UpstreamError.UpstreamError
    >
    const deadlineMs = Duration.toMillis(options.deadline ?? Duration.seconds(30))
    // Spans unless the caller makes its own (`spans: false`): internal/spans.ts.
    const spans = options.spans !== false
    const maxCooldownMs = Duration.toMillis(options.maxCooldown ?? Duration.minutes(5))
    const budget =
      options.budget === false
        ? undefined
        : RetryBudget.make({
            ratio: options.budget?.ratio ?? 0.2,
            minPerSecond: options.budget?.minPerSecond ?? 10,
            windowMs: Duration.toMillis(options.budget?.window ?? Duration.seconds(10))
          })

    const { coolDown, cooldowns } = Cooldowns.make(store, pool, monitor, maxCooldownMs)
    // A key's first 401 closes it here, whatever the stack (see `closedKeys.ts`).
    const closed = new ClosedKeys(options.closeOnUnauthorized ?? true)
    const attemptMonitor = closed.watching(monitor)

    // --- Selection, waiting up to the deadline for a key to become eligible ------------------
    // The per-request path is written with plain combinators rather than `Effect.gen`: it runs
    // for every request the gateway forwards, and generators plus their extra steps showed up in
    // its profile.

    // The request's clock is read synchronously (`unsafeCurrentTimeMillis`, TestClock included):
    // the same instants as `Clock.currentTimeMillis`, without an Effect step each. Selection runs
    // uninterruptibly (the KeySelector contract); only the waits between tries are interruptible.
    const selectWithin = (
      clock: Clock.Clock,
      restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
      base: Omit<KeySelector.SelectRequest, "gate" | "deadline">,
      deadlineAt: number,
      // Every eligible key already failed this request: what to try instead (one handler, not a
      // second catch frame on every selection).
      onTried: (() => Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable>) | undefined
    ): Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable> =>
      Effect.flatMap(store.entries<number>(Cooldowns.COOLDOWN), (entries) => {
        const now = clock.unsafeCurrentTimeMillis()
        const gate = closed.gate(Cooldowns.gateOf(entries, now))
        return Effect.catchAll(
          // The decision's waits run; its lease is reported once by the attempt holding it.
          KeySelector.toEffect(
            selector.decide(
              // One object shape for every request (see `KeySelector.withGate`).
              {
                model: base.model,
                attempt: base.attempt,
                tried: base.tried,
                affinity: base.affinity,
                gate,
                deadline: deadlineAt,
                only: undefined,
                hedge: undefined
              }
            )
          ),
          (error) => {
            const wait =
              error.retryAfter === undefined ? undefined : Math.max(1, Duration.toMillis(error.retryAfter))
            if (wait !== undefined && now + wait <= deadlineAt) {
              return Effect.zipRight(
                restore(Effect.sleep(Duration.millis(wait))),
                Effect.suspend(() => selectWithin(clock, restore, base, deadlineAt, onTried))
              )
            }
            return error.reason === "tried" && onTried !== undefined ? onTried() : Effect.fail(error)
          }
        )
      })

    // --- One attempt ------------------------------------------------------------------------

    /** What a successful attempt hands over besides its value: nothing (`run`), or a held lease. */
    type Hold<A> = ((held: Balancer.Scoped<A>) => Effect.Effect<void> | undefined) | undefined

    // The attempt's outcome: the attempt itself, its `error` set when the key failed it.
    const succeeded = <A>(
      attempt: Attempt<A>,
      value: A,
      costOf: ((a: A) => number | undefined) | undefined,
      hold: Hold<A>
    ): Effect.Effect<Attempt<A>> => {
      attempt.value = value
      if (hold === undefined)
        return Effect.as(attempt.settleNow("Success", costOf?.(value), undefined), attempt)
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

    const attemptOnce = <A, E, R>(
      clock: Clock.Clock,
      request: Balancer.RunRequest,
      attempt: number,
      tried: ReadonlySet<string>,
      dead: ReadonlySet<string>,
      reuseDelay: number,
      deadlineAt: number,
      use: (key: Key.Key, info: Balancer.AttemptInfo) => Effect.Effect<A, E, R>,
      costOf: ((a: A) => number | undefined) | undefined,
      hold: Hold<A>,
      trace: Spans.Trace | undefined,
      givenBack = 0
    ): Effect.Effect<Attempt<A>, E | KeySelector.NoKeyAvailable, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(
          selectWithin(
            clock,
            restore,
            selectBase(request, attempt, tried),
            deadlineAt,
            // Every eligible key already failed this request: back off, then reuse one, never a dead one.
            () =>
              Effect.zipRight(
                reuseDelay > 0 ? restore(Effect.sleep(Duration.millis(reuseDelay))) : Effect.void,
                selectWithin(clock, restore, selectBase(request, attempt, dead), deadlineAt, undefined)
              )
          ),
          (lease): Effect.Effect<Attempt<A>, E | KeySelector.NoKeyAvailable, R> => {
            // Closed while its decision waited: given back, and chosen again (the gate now refuses it).
            if (closed.isClosed(lease.key)) {
              closed.giveBack(lease)
              return givenBack < MAX_GIVEN_BACK
                ? attemptOnce(
                    clock,
                    request,
                    attempt,
                    tried,
                    dead,
                    reuseDelay,
                    deadlineAt,
                    use,
                    costOf,
                    hold,
                    trace,
                    givenBack + 1
                  )
                : Effect.fail(CLOSED_ONLY)
            }
            // Traced: the attempt's span is the parent of what `use` traces, and its lease's report ends it.
            const traced = trace?.attempt(lease, attempt)
            const current = new Attempt<A>(traced?.lease ?? lease, attempt, clock, attemptMonitor)
            const used = use(lease.key, { attempt })
            return Effect.zipRight(
              monitor.started(lease.key),
              Effect.matchCauseEffect(restore(traced ? Effect.withParentSpan(used, traced.span) : used), {
                onSuccess: (value) => succeeded(current, value, costOf, hold),
                onFailure: (cause) => failed(current, cause)
              })
            )
          }
        )
      )

    // --- The loop -----------------------------------------------------------------------------

    // --- The synchronous first attempt --------------------------------------------------------

    const syncParts =
      store.unsafe !== undefined &&
      monitor.unsafeStarted !== undefined &&
      monitor.unsafeFinished !== undefined
        ? {
            store: store.unsafe,
            started: monitor.unsafeStarted,
            finished: closed.noting(monitor.unsafeFinished)
          }
        : undefined

    const continueFrom: Continue = {
      run: (after, use, costOf, onHeld) =>
        after.error === undefined
          ? Effect.dieMessage("Balancer: a started attempt goes on only after unsafeFail")
          : onHeld === undefined
            ? loop(after.request, use, costOf, undefined, valueOf, after)
            : loop(after.request, use, undefined, holdWith(onHeld), scopedOf, after)
    }

    const unsafeStart: Balancer.Service["unsafeStart"] = (request) => {
      if (syncParts === undefined) return undefined
      const now = ownClock.unsafeCurrentTimeMillis()
      const exclude = request.exclude
      const cooling = closed.gate(Cooldowns.gateOf(syncParts.store.entries<number>(Cooldowns.COOLDOWN), now))
      const decided = selector.decide({
        model: request.model,
        attempt: exclude === undefined ? 1 : 2,
        tried: exclude ?? NOTHING_TRIED,
        affinity: request.affinity,
        gate: exclude === undefined ? cooling : excluding(exclude, cooling),
        deadline: now + deadlineMs,
        only: undefined,
        hedge: exclude !== undefined
      })
      // Refused, or must wait (having taken nothing): `run`/`runHeld` decide again, and wait or fail.
      if (!KeySelector.isLease(decided)) return undefined
      // Closed meanwhile (a strategy whose lease was decided before the 401): given back untouched.
      if (closed.isClosed(decided.key)) return closed.giveBack(decided)
      // A hedge's second attempt is not a new request for the retry budget.
      if (exclude === undefined) budget?.deposit(now)
      syncParts.started(decided.key)
      return new Started(decided, ownClock, syncParts.finished, now, request, continueFrom)
    }

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
        const tried = new Set<string>()
        const dead = new Set<string>()
        const attempts: Array<Balancer.Attempt> = []
        let state = backoff.initial
        let reuseDelay = 0
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
          Effect.matchCauseEffect(
            attemptOnce(
              clock,
              request,
              attempt,
              tried,
              dead,
              reuseDelay,
              deadlineAt,
              use,
              costOf,
              hold,
              trace
            ),
            {
              onFailure: (
                cause
              ): Effect.Effect<never, E | AllAttemptsFailed | KeySelector.NoKeyAvailable> => {
                const failure = Cause.failureOrCause(cause)
                return failure._tag === "Left" && failure.left instanceof KeySelector.NoKeyAvailable
                  ? noKey(failure.left)
                  : Effect.failCause(cause)
              },
              onSuccess: (done) =>
                done.error === undefined ? Effect.succeed(result(done)) : next(attempt, done.key, done.error)
            }
          )
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
              reuseDelay = 0
              return yield* from(attempt + 1)
            }
            if (disposition !== "retry-same") tried.add(key.id)
            if (disposition === "eject") dead.add(key.id)
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
              reuseDelay = 0
            } else {
              reuseDelay = delay
            }
            return yield* from(attempt + 1)
          })
        return after === undefined ? from(1) : next(1, after.key, after.error!)
      })

    const run: Balancer.Service["run"] = (request, use, options) =>
      loop(request, use, options?.costOf, undefined, valueOf)

    const runScoped: Balancer.Service["runScoped"] = (request, use) =>
      Effect.flatMap(Effect.scope, (scope) =>
        // Held until the caller settles it, or its scope closes (then: no verdict).
        loop(request, use, undefined, (scoped) => Scope.addFinalizer(scope, scoped.cancel), scopedOf)
      )

    const holdWith =
      <A>(onHeld: (held: Balancer.Scoped<A>) => void): Hold<A> =>
      (scoped) => {
        onHeld(scoped)
        return undefined
      }

    const runHeld: Balancer.Service["runHeld"] = (request, use, onHeld) =>
      loop(request, use, undefined, holdWith(onHeld), scopedOf)

    const batch: Balancer.Service["batch"] = (inputs, f, { concurrency }) =>
      Effect.forEach(inputs, (input) => Effect.either(f(input)), { concurrency })

    return { run, runScoped, runHeld, batch, cooldowns, unsafeStart } satisfies Balancer.Service
  })

const EXCLUDED: KeySelector.Ineligible = { reason: "ineligible" }

/** `gate` with the excluded keys made ineligible. */
const excluding =
  (exclude: ReadonlySet<string>, gate: KeySelector.Gate | undefined): KeySelector.Gate =>
  (key) =>
    exclude.has(key.id) ? EXCLUDED : gate?.(key)
