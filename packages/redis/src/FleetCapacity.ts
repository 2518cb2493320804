/**
 * The `Capacity` of one replica of a fleet: each key's cap is leased from Redis in slices
 * (`LeaseKeeper`), so the permits in use summed over the replicas never exceed it. The hot path
 * reads the slice synchronously; a background loop renews every key's slice with the replica's
 * demand (in use + waiting + 1, up to the cap) every `renewEveryMs`, and wakes waiters when a
 * slice grows. Redis unreachable: what is held is kept until it expires, then the local share
 * (cap ÷ replicas), and `or_balancer_store_degraded` is 1.
 *
 * @since 0.3.0
 */
import * as Capacity from "@or-balancer/strategies/Capacity"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as LeaseKeeper from "./LeaseKeeper.js"
import type { RedisStore } from "./RedisStore.js"

/**
 * @since 0.3.0
 * @category Models
 */
export interface Options {
  readonly replicaId: string
  /** The fleet's size, for the local share when Redis is unreachable. */
  readonly replicas: number
  /** Slice lifetime (default 3 s): a killed replica's permits return within it. */
  readonly ttlMs?: number | undefined
  /** How often slices are renewed and rebalanced by demand (default 50 ms). */
  readonly renewEveryMs?: number | undefined
}

/**
 * The service and its keeper (for status and tests). Renews until the scope closes, then gives
 * the slices back.
 *
 * @since 0.3.0
 * @category Constructors
 */
export const make = (
  options: Options
): Effect.Effect<
  { readonly capacity: Capacity.Service; readonly keeper: LeaseKeeper.Service },
  never,
  RedisStore | Scope.Scope
> =>
  Effect.gen(function* () {
    const ttlMs = options.ttlMs ?? 3_000
    const every = options.renewEveryMs ?? 50
    const keeper = yield* LeaseKeeper.make({
      replicaId: options.replicaId,
      replicas: options.replicas,
      ttlMs
    })
    // On /metrics from the start (the keeper sets it only when the state changes).
    yield* Metric.set(LeaseKeeper.degradedGauge, keeper.unsafeDegraded() ? 1 : 0)
    const consumers = new Set<Capacity.Consumer>()
    const known = new Set<string>()
    // A new consumer is served at once rather than at the next tick.
    let kick = Deferred.unsafeMake<void>(undefined as never)

    const renewAll = Effect.suspend(() =>
      Effect.forEach(
        Array.from(consumers).flatMap((c) => c.usage().map((u) => [c, u] as const)),
        ([consumer, u]) => {
          known.add(u.keyId)
          const before = keeper.unsafePermits(u.keyId, u.cap)
          const want = Math.min(u.cap, u.inUse + u.waiting + 1)
          return Effect.map(keeper.renewPermits(u.keyId, { want, cap: u.cap, inUse: u.inUse }), () => {
            if (keeper.unsafePermits(u.keyId, u.cap) > before) consumer.grown(u.keyId)
          })
        },
        // ioredis pipelines concurrent commands: one round trip for all keys.
        { concurrency: "unbounded", discard: true }
      )
    )
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          renewAll,
          Effect.suspend(() => Effect.race(Effect.sleep(every), Deferred.await(kick))).pipe(
            Effect.zipRight(Effect.sync(() => (kick = Deferred.unsafeMake<void>(undefined as never))))
          )
        )
      )
    )
    yield* Effect.addFinalizer(() =>
      Effect.forEach(Array.from(known), (k) => keeper.release(k), { concurrency: "unbounded", discard: true })
    )

    const capacity: Capacity.Service = {
      permits: (keyId, cap) => keeper.unsafePermits(keyId, cap),
      register: (consumer) => {
        consumers.add(consumer)
        Deferred.unsafeDone(kick, Effect.void)
        return () => consumers.delete(consumer)
      }
    }
    return { capacity, keeper }
  })
