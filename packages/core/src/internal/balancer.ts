// The Balancer (see `Balancer.ts`): its settings and parts wired together, the synchronous first
// attempt (`unsafeStart`), and the run forms over the Effect loop (internal/retryLoop.ts).
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as Balancer from "../Balancer.js"
import * as KeyPool from "../KeyPool.js"
import * as KeySelector from "../KeySelector.js"
import * as Monitor from "../Monitor.js"
import * as StateStore from "../StateStore.js"
import type * as UpstreamError from "../UpstreamError.js"
import { defaultBackoff } from "./allAttemptsFailed.js"
import { type Continue, scopedOf, Started, valueOf } from "./attempt.js"
import * as AttemptOnce from "./attemptOnce.js"
import type { Hold } from "./attemptOnce.js"
import { ClosedKeys } from "./closedKeys.js"
import * as Cooldowns from "./cooldowns.js"
import * as RetryBudget from "./retryBudget.js"
import * as RetryLoop from "./retryLoop.js"
import * as SelectWithin from "./selectWithin.js"

const NOTHING_TRIED: ReadonlySet<string> = new Set()

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

    const attemptOnce = AttemptOnce.make({
      selectWithin: SelectWithin.make(selector, store, closed),
      closed,
      monitor,
      attemptMonitor: closed.watching(monitor)
    })
    const loop = RetryLoop.make({
      attemptOnce,
      coolDown,
      monitor,
      budget,
      backoff,
      maxAttempts,
      deadlineMs,
      spans
    })

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
