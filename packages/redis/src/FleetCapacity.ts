/**
 * The `Capacity` of one replica of a fleet: each key's cap is leased from Redis in slices
 * (`LeaseKeeper`), so the permits in use summed over the replicas never exceed it. The hot path
 * reads the slice synchronously and wakes waiters when a slice grows. Steady load never waits on
 * Redis: a slice is twice the recent peak of in use + waiting plus 2 (up to the cap), renewed ahead
 * when half of it is in use and kept whole while that renewal is in flight, and otherwise only at
 * the keep-alive (a third of the TTL), where an idle replica gives its slice back. While the
 * fleet's pool is nearly all granted (what is left is less than an even share: others may be
 * short) a key renews on every `renewEveryMs` tick,
 * keeping in flight what is in use or up to the even share (cap ÷ replicas), so slack beyond that
 * moves to the others by demand and load within the share does not wait on the round trip.
 * A renewal never takes back a permit in use, so a replica over its water-filling share (a queue
 * keeps its permits busy) is told what it may use (`usable`) and drains to it as its requests end:
 * a replica that joins a saturated fleet, or lost its slice, gets its share back.
 * Redis unreachable: what is held is kept until it expires, then the local share (cap ÷ replicas),
 * and `or_balancer_store_degraded` is 1.
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

/** Headroom beyond twice the recent peak, in permits. */
const MIN_PERMITS = 2

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
    const keepAliveMs = Math.max(every, Math.floor(ttlMs / 3))
    const clock = yield* Effect.clock
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

    // Per key: the most in use + waiting since the last periodic renewal, when that was, the cap
    // last seen, and whether the fleet's pool was all granted (others may be short).
    const state = new Map<string, { peak: number; renewedAt: number; cap: number; tight: boolean }>()
    const stateOf = (keyId: string, cap: number) => {
      let st = state.get(keyId)
      if (st === undefined) state.set(keyId, (st = { peak: 0, renewedAt: -Infinity, cap, tight: true }))
      return st
    }
    // Renews every key that needs it now: a slice half used, waiters, a tight pool (its slack must
    // go back to the others quickly), the keep-alive (a third of the TTL), or idle slack to give back.
    const renewAll = Effect.suspend(() => {
      const at = clock.unsafeCurrentTimeMillis()
      return Effect.forEach(
        Array.from(consumers).flatMap((c) => c.usage().map((u) => [c, u] as const)),
        ([consumer, u]) => {
          known.add(u.keyId)
          const st = stateOf(u.keyId, u.cap)
          st.cap = u.cap
          const need = u.inUse + u.waiting
          if (need > st.peak) st.peak = need
          const before = keeper.unsafePermits(u.keyId, u.cap)
          const periodic = at - st.renewedAt >= keepAliveMs
          const due =
            periodic || st.tight || u.waiting > 0 || need * 2 >= before || (st.peak === 0 && before > 0)
          // Headroom: twice the recent peak plus a minimum, so steady load never waits on Redis.
          const want = Math.min(u.cap, st.peak === 0 ? 0 : 2 * st.peak + MIN_PERMITS)
          if (!due || (want === 0 && before === 0 && u.inUse === 0)) return Effect.void
          // With a pool to spare, keep the slice (up to the new want) while the renewal is in
          // flight: nobody is short. When it is all granted, keep no more than the even share
          // (cap ÷ replicas) beyond what is in use, so the rest can move to the others: water-filling
          // entitles each of them to that share anyway, and steady load below it need not wait.
          const keep = Math.max(
            u.inUse,
            Math.min(before, want, st.tight || u.waiting > 0 ? keeper.unsafeEvenShare(u.cap) : Infinity)
          )
          if (periodic) {
            st.renewedAt = at
            st.peak = need
          }
          return Effect.map(keeper.renewPermits(u.keyId, { want, cap: u.cap, inUse: keep }), (slice) => {
            // Tight once what is unallocated could not give a replica its even share: a replica
            // joining (or back from idle) is then short until the others renew, so they renew on
            // every tick rather than at the keep-alive (a second of waiting for the newcomer).
            st.tight =
              slice.source !== "redis" ||
              slice.pooled === undefined ||
              u.cap - slice.pooled < keeper.unsafeEvenShare(u.cap)
            if (keeper.unsafePermits(u.keyId, u.cap) > before) consumer.grown(u.keyId)
          })
        },
        // ioredis pipelines concurrent commands: one round trip for all keys.
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.ensuring(Effect.sync(() => (inFlight = false))))
    })
    let inFlight = false
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
      permits: (keyId, cap, inUse) => {
        const n = keeper.unsafePermits(keyId, cap)
        // Renew ahead: half the slice in use (or it is exhausted) wakes the loop now.
        // (A tight pool is renewed on every tick anyway.)
        if (inUse !== undefined && !inFlight && (inUse + 1) * 2 > n && state.get(keyId)?.tight === false) {
          inFlight = true
          Deferred.unsafeDone(kick, Effect.void)
        }
        return n
      },
      register: (consumer) => {
        consumers.add(consumer)
        Deferred.unsafeDone(kick, Effect.void)
        return () => consumers.delete(consumer)
      }
    }
    return { capacity, keeper }
  })
