/**
 * Smooth weighted round robin (nginx's algorithm): every key gains its weight at each pick, the
 * key with the highest running total is chosen and loses the sum of the weights. Weights 5:1:1
 * give `a a b a c a a`: exact proportions in every full cycle, no bursts.
 *
 * Only candidates take part in a round, so an ineligible key neither gains nor loses and the
 * others keep their exact proportions among themselves. The running totals live in the
 * `StateStore` (namespace `or-balancer/weighted`, id `name`).
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { admitsAll, ns, onlyPosition, storedSelector } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** The state's id in the store; give each weighted selector of one program its own. Default "default". */
  readonly name?: string | undefined
}

type Totals = Record<string, number>

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
    return storedSelector<Totals>(
      pool,
      store,
      yield* Effect.clock,
      ns.weighted,
      id,
      (request, keys, current) => {
        // Updated in place: the totals are plain data, so a shared store can still serialise them.
        const totals: Totals = current ?? Object.create(null)
        // Kept to one key: a round of one candidate gains and loses its own weight, so its
        // total stays as it was; no scan.
        if (request.only !== undefined) {
          const i = onlyPosition(request, keys)
          if (i < 0) return [undefined, totals]
          const k = keys[i]!
          totals[k.id] ??= 0
          return [k, totals]
        }
        // Nothing to ask per key on a first attempt under no decorator.
        const all = admitsAll(request)
        let total = 0
        let best: Key.Key | undefined
        let bestValue = -Infinity
        for (const k of keys) {
          if (!all && !KeySelector.isCandidate(request, k)) continue
          const v = (totals[k.id] ?? 0) + k.weight
          totals[k.id] = v
          total += k.weight
          if (v > bestValue) {
            best = k
            bestValue = v
          }
        }
        if (best !== undefined) totals[best.id] = bestValue - total
        return [best, totals]
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
