/**
 * Uniform random choice among the candidates, decided synchronously by a generator seeded from
 * Effect's `Random` when the layer is built (pin it with `Effect.withRandom(Random.make(seed))`
 * around the layer's construction for deterministic tests).
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
  return candidateSelector(pool, yield* Effect.clock, (c) => c[prng.integer(c.length)]!)
})

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool> = Layer.effect(
  KeySelector.KeySelector,
  make
)
