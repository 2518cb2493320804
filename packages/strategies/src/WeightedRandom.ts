/**
 * Random choice among the candidates in proportion to their weights, through Effect's `Random`.
 *
 * @since 0.1.0
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as EffectRandom from "effect/Random"
import { candidateSelector, succeedLease } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<KeySelector.Service, never, KeyPool.KeyPool> = Effect.map(
  KeyPool.KeyPool,
  (pool) =>
    candidateSelector(pool, (c) => {
      let total = 0
      for (const k of c) total += k.weight
      return Effect.flatMap(EffectRandom.nextIntBetween(0, total), (r) => {
        for (const k of c) {
          r -= k.weight
          if (r < 0) return succeedLease(k)
        }
        return succeedLease(c[c.length - 1]!)
      })
    })
)

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool> = Layer.effect(
  KeySelector.KeySelector,
  make
)
