/**
 * Least busy by the power of two choices: two distinct candidates drawn at random (a generator
 * seeded from Effect's `Random` when the layer is built, see `Random`), the one
 * with fewer requests in flight per unit of weight wins (`(inFlight + 1) / weight`, so an idle
 * heavy key beats an idle light one). Two random choices avoid the herd that "always the least
 * loaded" causes when many selections read the same counts.
 *
 * In-flight counts live in the `StateStore` (namespace `or-balancer/in-flight`), incremented at
 * selection and brought down by the lease's report, which comes however the attempt ends (once:
 * `select`'s leases, and the `Balancer`, count only the first report).
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { candidatesOf, noKey, ns, seededPrng, storeOf, withKeys } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<KeySelector.Service, never, KeyPool.KeyPool | StateStore.StateStore> =
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const st = storeOf(yield* StateStore.StateStore)
    const clock = yield* Effect.clock
    const prng = yield* seededPrng
    // The count goes up with the lease and down with its report.
    const hold = (key: Key.Key): KeySelector.Decision =>
      st.modify<number, void>(
        ns.inFlight,
        key.id,
        (n) => [undefined, (n ?? 0) + 1],
        () => KeySelector.lease(key, () => st.add(ns.inFlight, key.id, -1))
      )
    const load = (n: number | undefined, key: Key.Key) => ((n ?? 0) + 1) / key.weight
    return KeySelector.fromDecide((request) =>
      withKeys(pool, (keys) => {
        const c = candidatesOf(request, keys)
        if (c.length === 0) return noKey(clock, request, keys)
        if (c.length === 1) return hold(c[0]!)
        const i = prng.integer(c.length)
        const j0 = prng.integer(c.length - 1)
        const a = c[i]!
        const b = c[j0 >= i ? j0 + 1 : j0]!
        return st.get<number>(ns.inFlight, a.id, (na) =>
          st.get<number>(ns.inFlight, b.id, (nb) => hold(load(nb, b) < load(na, a) ? b : a))
        )
      })
    )
  })

/**
 * Requests in flight per key id, as counted by this strategy.
 *
 * @since 0.1.0
 * @category Accessors
 */
export const inFlight: Effect.Effect<
  ReadonlyMap<string, number>,
  never,
  StateStore.StateStore
> = Effect.flatMap(StateStore.StateStore, (store) =>
  Effect.map(store.entries<number>(ns.inFlight), (es) => new Map(es))
)

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore> =
  Layer.effect(KeySelector.KeySelector, make)
