/**
 * Random choice among the candidates in proportion to their weights, decided synchronously by a
 * generator seeded from Effect's `Random` when the layer is built (see `Random`).
 *
 * @since 0.1.0
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { candidateSelector, seededPrng } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<KeySelector.Service, never, KeyPool.KeyPool> = Effect.gen(function* () {
  const pool = yield* KeyPool.KeyPool
  const prng = yield* seededPrng
  return candidateSelector(pool, yield* Effect.clock, (c) => {
    let total = 0
    for (const k of c) total += k.weight
    let r = prng.integer(total)
    for (const k of c) {
      r -= k.weight
      if (r < 0) return k
    }
    return c[c.length - 1]!
  })
})

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool> = Layer.effect(
  KeySelector.KeySelector,
  make
)
