/**
 * Concurrency-limited (a decorator): each key has a counting semaphore of `maxConcurrency`
 * permits (the key's own, or `defaultMax`). The inner selector only sees keys with a free permit,
 * so a key with a free permit is taken at once. When every candidate is full the caller waits,
 * without polling, in one FIFO queue shared by all keys: a released permit is handed straight to
 * the first waiter that can use that key (no barging by later arrivals), up to the request's
 * `deadline`. The lease's report gives the permit back (success, failure, or `Cancelled` on
 * interruption), and a waiter interrupted in the queue leaves it cleanly.
 *
 * The permits are per process (they guard this process's sockets); effect's `Semaphore` is not
 * used because a waiter must take "the first permit freed on any of several keys", which one
 * semaphore per key cannot express without racing and leaking permits.
 *
 * `unsafeSelect` (offered when the inner selector has it and the pool reads synchronously) takes
 * a free permit as `select` would, and answers `undefined`, having taken nothing, where `select`
 * would wait in the queue.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import { only } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** Permits for a key that sets no `maxConcurrency`. Default 10. */
  readonly defaultMax?: number | undefined
}

/**
 * Permits in use per key id, and how many callers wait.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Status {
  readonly inUse: ReadonlyMap<string, number>
  readonly waiting: number
}

interface Waiter {
  readonly request: KeySelector.SelectRequest
  readonly deferred: Deferred.Deferred<void>
  key: Key.Key | undefined
  /** Keys the inner selector refused when handed to this waiter's selection: not handed again. */
  readonly refused: ReadonlySet<string> | undefined
}

const FULL: KeySelector.Ineligible = { reason: "concurrency" }
const CANCELLED = KeySelector.cancelled()

/**
 * The selector, and a `status` accessor (permits in use, waiters) for status pages and tests.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const makeWithStatus = (
  options: Options = {}
): Effect.Effect<
  { readonly selector: KeySelector.Service; readonly status: Effect.Effect<Status> },
  never,
  KeySelector.KeySelector | KeyPool.KeyPool
> =>
  Effect.gen(function* () {
    const inner = yield* KeySelector.KeySelector
    const pool = yield* KeyPool.KeyPool
    const clock = yield* Effect.clock
    const defaultMax = options.defaultMax ?? 10
    const inUse = new Map<string, number>()
    const waiters: Array<Waiter> = []

    const capOf = (k: Key.Key) => k.maxConcurrency ?? defaultMax
    const isFree = (k: Key.Key) => (inUse.get(k.id) ?? 0) < capOf(k)
    const fullGate: KeySelector.Gate = (k) => (isFree(k) ? undefined : FULL)
    const take = (k: Key.Key) => {
      inUse.set(k.id, (inUse.get(k.id) ?? 0) + 1)
    }
    // Hands the permit to the first waiter that can use this key, else gives it back. A waiter
    // whose inner selector already refused this key is passed over: otherwise two such waiters
    // hand a permit back and forth forever, in no time.
    const release = (k: Key.Key) => {
      for (let i = 0; i < waiters.length; i++) {
        const w = waiters[i]!
        if (w.refused?.has(k.id) !== true && KeySelector.isCandidate(w.request, k)) {
          waiters.splice(i, 1)
          w.key = k
          Deferred.unsafeDone(w.deferred, Exit.void)
          return
        }
      }
      // A count of 0 stays in the map: deleting and re-adding on every request costs more.
      inUse.set(k.id, Math.max(0, (inUse.get(k.id) ?? 0) - 1))
    }

    // The lease gives its permit back when reported, then reports to the inner lease.
    // A second report (a caller breaking the once-only contract) must not free a second permit.
    const holding = (lease: KeySelector.Lease): KeySelector.Lease => {
      const key = lease.key
      let held = true
      return KeySelector.lease(key, (outcome) =>
        Effect.suspend(() => {
          if (!held) return Effect.void
          held = false
          release(key)
          return lease.report(outcome)
        })
      )
    }
    // The same for the fast path's lease, whose `report` runs this too (`KeySelector.unsafeLease`).
    const unsafeHolding = (lease: KeySelector.UnsafeLease): KeySelector.UnsafeLease => {
      const key = lease.key
      let held = true
      return KeySelector.unsafeLease(key, (outcome) => {
        if (!held) return
        held = false
        release(key)
        lease.unsafeReport(outcome)
      })
    }
    // Whether a selection the inner selector refused waits for a permit (else it fails at once):
    // some candidate is only full, and the deadline is still ahead.
    const waitsFor = (request: KeySelector.SelectRequest, keys: ReadonlyArray<Key.Key>): boolean =>
      request.deadline !== undefined && KeySelector.candidates(request, keys).some((k) => !isFree(k))

    // Waits in the queue, interruptibly (selection itself runs uninterruptibly). A permit handed
    // over is ours from then on: if an interruption lands at the same moment, it is passed on.
    const wait = (
      request: KeySelector.SelectRequest,
      millis: number,
      refused: ReadonlySet<string> | undefined
    ): Effect.Effect<Key.Key | undefined> =>
      Effect.suspend(() => {
        const w: Waiter = {
          request,
          deferred: Deferred.unsafeMake<void>(FiberId.none),
          key: undefined,
          refused
        }
        waiters.push(w)
        return Effect.interruptible(
          Effect.timeoutOption(Deferred.await(w.deferred), Duration.millis(millis))
        ).pipe(
          Effect.exit,
          Effect.flatMap((exit) => {
            const key = w.key
            if (key === undefined) {
              const i = waiters.indexOf(w)
              if (i >= 0) waiters.splice(i, 1)
              return Exit.isFailure(exit) ? Effect.failCause(exit.cause) : Effect.succeed(undefined)
            }
            if (Exit.isFailure(exit)) {
              release(key)
              return Effect.failCause(exit.cause)
            }
            return Effect.succeed(key)
          })
        )
      })

    const select = (
      request: KeySelector.SelectRequest,
      // Keys the inner selector refused when handed to this selection (see `release`).
      refused?: Set<string>
    ): Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable> =>
      // (`catchAll` over `flatMap` rather than `matchEffect`, which costs several times more: a
      // failure of the start-over path below is that selection's own, past its wait, so it
      // fails again here at once.)
      Effect.catchAll(
        Effect.flatMap(inner.select(KeySelector.withGate(request, fullGate)), (lease) => {
          // The inner selector may have yielded; if the key filled up meanwhile, start over.
          if (!isFree(lease.key)) return Effect.zipRight(lease.report(CANCELLED), select(request, refused))
          take(lease.key)
          return Effect.succeed(holding(lease))
        }),
        (error) =>
          Effect.flatMap(pool.get, (keys) => {
            const deadline = request.deadline
            if (deadline === undefined || !waitsFor(request, keys)) return Effect.fail(error)
            return Effect.flatMap(Clock.currentTimeMillis, (now) =>
              now >= deadline ? Effect.fail(error) : waitAndSelect(request, deadline - now, error, refused)
            )
          })
      )

    const waitAndSelect = (
      request: KeySelector.SelectRequest,
      millis: number,
      error: KeySelector.NoKeyAvailable,
      refused: Set<string> | undefined
    ): Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable> =>
      Effect.flatMap(wait(request, millis, refused), (key) => {
        if (key === undefined) {
          return Effect.fail(
            new KeySelector.NoKeyAvailable({
              reason: "concurrency",
              message: `${error.message}; no permit freed before the deadline`
            })
          )
        }
        // The permit is ours: let the inner selector lease exactly that key.
        return Effect.matchEffect(inner.select(KeySelector.withGate(request, only(key.id, "concurrency"))), {
          onSuccess: (lease) => Effect.succeed(holding(lease)),
          onFailure: () =>
            Effect.suspend(() => {
              const now = refused ?? new Set<string>()
              now.add(key.id)
              release(key)
              return select(request, now)
            })
        })
      })

    const innerUnsafe = inner.unsafeSelect
    const keysNow = pool.unsafeGet
    const unsafeSelect: KeySelector.Service["unsafeSelect"] =
      innerUnsafe === undefined || keysNow === undefined
        ? undefined
        : (request) => {
            const picked = innerUnsafe(KeySelector.withGate(request, fullGate))
            if (picked === undefined) return undefined
            if (picked instanceof KeySelector.NoKeyAvailable) {
              const deadline = request.deadline
              return deadline !== undefined &&
                waitsFor(request, keysNow()) &&
                clock.unsafeCurrentTimeMillis() < deadline
                ? undefined
                : picked
            }
            // Nothing yielded since the gate was read, so the key is still free, unless the inner
            // selector ignored the gate: then, as `select` does, give its lease back and start over.
            if (!isFree(picked.key)) {
              picked.unsafeReport(CANCELLED)
              return unsafeSelect!(request)
            }
            take(picked.key)
            return unsafeHolding(picked)
          }

    const status: Effect.Effect<Status> = Effect.sync(() => ({
      inUse: new Map(Array.from(inUse).filter(([, n]) => n > 0)),
      waiting: waiters.length
    }))
    return { selector: KeySelector.make((request) => select(request), unsafeSelect), status }
  })

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options?: Options
): Effect.Effect<KeySelector.Service, never, KeySelector.KeySelector | KeyPool.KeyPool> =>
  Effect.map(makeWithStatus(options), (m) => m.selector)

/**
 * Requires the inner `KeySelector`.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<KeySelector.KeySelector, never, KeySelector.KeySelector | KeyPool.KeyPool> =>
  Layer.effect(KeySelector.KeySelector, make(options))
