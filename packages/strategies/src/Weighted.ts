/**
 * Smooth weighted round robin (nginx's algorithm): every key gains its weight at each pick, the
 * key with the highest running total is chosen and loses the sum of the weights. Weights 5:1:1
 * give `a a b a c a a`: exact proportions in every full cycle, no bursts.
 *
 * Only candidates take part in a round, so an ineligible key neither gains nor loses and the
 * others keep their exact proportions among themselves. The running totals live in the
 * `StateStore` (namespace `or-balancer/weighted`, id `name`).
 *
 * Cost: the totals are kept lazily, so a round where every key takes part touches only the
 * winner (O(distinct weights + log n) for n keys, not O(n)); a round with a gate asks each key,
 * as it must to know who takes part; a request kept to one key (`only`) costs O(1).
 *
 * @since 0.1.0
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ns, storedSelector } from "./internal/common.js"
import * as SmoothWeighted from "./internal/smoothWeighted.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** The state's id in the store; give each weighted selector of one program its own. Default "default". */
  readonly name?: string | undefined
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<KeySelector.Service, never, KeyPool.KeyPool | StateStore.StateStore> =>
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const store = yield* StateStore.StateStore
    const id = options.name ?? "default"
    return storedSelector<SmoothWeighted.Totals>(
      pool,
      store,
      yield* Effect.clock,
      ns.weighted,
      id,
      (request, keys, current) => {
        // Changed in place (plain data, so a shared store can still serialise it).
        const totals = SmoothWeighted.totalsOf(current)
        return [SmoothWeighted.pick(totals, request, keys), totals]
      }
    )
  })

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore> =>
  Layer.effect(KeySelector.KeySelector, make(options))
