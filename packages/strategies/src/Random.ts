/**
 * Uniform random choice among the candidates, through Effect's `Random` (pin it with
 * `Random.make(seed)` / `Effect.withRandom` for deterministic tests).
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
    candidateSelector(pool, (c) =>
      Effect.flatMap(EffectRandom.nextIntBetween(0, c.length), (i) => succeedLease(c[i]!))
    )
)

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool> = Layer.effect(
  KeySelector.KeySelector,
  make
)
