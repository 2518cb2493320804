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
 * The decision takes a free permit at once; when it would queue, it answers a `Wait` for the
 * queue, having taken nothing.
 *
 * Across replicas: the cap this process enforces is what the optional `Capacity` service grants it
 * (read synchronously; default the key's whole cap). A fleet's provider leases each replica a slice
 * and renews it in the background from the usage registered here; a slice that grows wakes waiters,
 * and one that shrinks below what is in use drains: freed permits go back instead of to waiters.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Capacity from "./Capacity.js"
import { only, withKeys } from "./internal/common.js"

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
    const capacity = Option.getOrElse(yield* Effect.serviceOption(Capacity.Capacity), () => Capacity.local)
    // Permits in use per key id, each a counter changed in place: one lookup per take or release.
    const inUse = new Map<string, { n: number }>()
    const counterOf = (id: string) => {
      let c = inUse.get(id)
      if (c === undefined) {
        c = { n: 0 }
        inUse.set(id, c)
      }
      return c
    }
    const usedBy = (id: string) => inUse.get(id)?.n ?? 0
    const waiters: Array<Waiter> = []

    const fullCap = (k: Key.Key) => k.maxConcurrency ?? defaultMax
    // The default provider grants the whole cap: skip the call then.
    const isFree =
      capacity === Capacity.local
        ? (k: Key.Key) => usedBy(k.id) < fullCap(k)
        : (k: Key.Key) => {
            const n = usedBy(k.id)
            return n < capacity.permits(k.id, fullCap(k), n)
          }
    const fullGate: KeySelector.Gate = (k) => (isFree(k) ? undefined : FULL)
    const take = (k: Key.Key) => {
      counterOf(k.id).n++
    }
    // Hands the permit to the first waiter that can use this key, else gives it back. A waiter
    // whose inner selector already refused this key is passed over: otherwise two such waiters
    // hand a permit back and forth forever, in no time.
    const release = (k: Key.Key) => {
      const c = counterOf(k.id)
      // A fleet's slice may have shrunk below what is in use (its share went to a replica that is
      // short): then the permit goes back rather than to a waiter here, so the slice drains.
      if (capacity !== Capacity.local) {
        if (c.n - 1 >= capacity.permits(k.id, fullCap(k), c.n - 1)) {
          c.n = Math.max(0, c.n - 1)
          return
        }
      }
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
      c.n = Math.max(0, c.n - 1)
    }

    // The lease gives its permit back when reported, then reports to the inner lease.
    const holding = (lease: KeySelector.Lease): KeySelector.Lease => {
      const key = lease.key
      return KeySelector.lease(key, (outcome) => {
        release(key)
        return lease.unsafeReport(outcome)
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

    const decide = (
      request: KeySelector.SelectRequest,
      // Keys the inner selector refused when handed to this selection (see `release`).
      refused?: Set<string>
    ): KeySelector.Decision => {
      const decided = inner.decide(KeySelector.withGate(request, fullGate))
      // No closure on the synchronous path: only a waiting inner decision needs one.
      return KeySelector.isWait(decided)
        ? KeySelector.andThen(decided, (picked) => afterInner(request, refused, picked))
        : afterInner(request, refused, decided)
    }

    const afterInner = (
      request: KeySelector.SelectRequest,
      refused: Set<string> | undefined,
      picked: KeySelector.Lease | KeySelector.NoKeyAvailable
    ): KeySelector.Decision => {
      if (KeySelector.isNoKeyAvailable(picked)) {
        const deadline = request.deadline
        if (deadline === undefined) return picked
        return withKeys(pool, (keys) => {
          if (!waitsFor(request, keys)) return picked
          const now = clock.unsafeCurrentTimeMillis()
          return now >= deadline
            ? picked
            : new KeySelector.Wait(waitAndDecide(request, deadline - now, picked, refused))
        })
      }
      // The inner selector may have waited; if the key filled up meanwhile, start over.
      if (!isFree(picked.key)) return KeySelector.giveBack(picked, CANCELLED, () => decide(request, refused))
      take(picked.key)
      return holding(picked)
    }

    const waitAndDecide = (
      request: KeySelector.SelectRequest,
      millis: number,
      error: KeySelector.NoKeyAvailable,
      refused: Set<string> | undefined
    ): Effect.Effect<KeySelector.Decision> =>
      Effect.map(wait(request, millis, refused), (key) => {
        if (key === undefined) {
          return new KeySelector.NoKeyAvailable({
            reason: "concurrency",
            message: `${error.message}; no permit freed before the deadline`
          })
        }
        // The permit is ours: let the inner selector lease exactly that key.
        return KeySelector.andThen(
          inner.decide(KeySelector.withGate(request, only(key.id, "concurrency"))),
          (picked) => {
            if (!KeySelector.isNoKeyAvailable(picked)) return holding(picked)
            const now = refused ?? new Set<string>()
            now.add(key.id)
            release(key)
            return decide(request, now)
          }
        )
      })

    if (capacity !== Capacity.local) {
      // New permits (a grown slice) go to the waiters in turn, as a released permit would.
      const grown = (keyId: string) => {
        const keys = pool.unsafeGet?.() ?? []
        const k = keys.find((key) => key.id === keyId)
        if (k === undefined) return
        while (waiters.length > 0 && isFree(k)) {
          const before = waiters.length
          take(k)
          release(k)
          if (waiters.length === before) break
        }
      }
      const usage = (): ReadonlyArray<Capacity.Usage> => {
        const keys = pool.unsafeGet?.() ?? []
        return keys.map((k) => {
          let waiting = 0
          for (const w of waiters) if (KeySelector.isCandidate(w.request, k)) waiting++
          return { keyId: k.id, cap: fullCap(k), inUse: usedBy(k.id), waiting }
        })
      }
      const unregister = capacity.register({ usage, grown })
      // Built in a scope (the layer's), the registration ends with it.
      const scope = yield* Effect.serviceOption(Scope.Scope)
      if (Option.isSome(scope)) yield* Scope.addFinalizer(scope.value, Effect.sync(unregister))
    }

    const status: Effect.Effect<Status> = Effect.sync(() => ({
      inUse: new Map(Array.from(inUse, ([id, c]) => [id, c.n] as const).filter(([, n]) => n > 0)),
      waiting: waiters.length
    }))
    return { selector: KeySelector.fromDecide((request) => decide(request)), status }
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
  Layer.scoped(KeySelector.KeySelector, make(options))
