/**
 * Random choice among the candidates in proportion to their weights, decided synchronously by a
 * generator seeded from Effect's `Random` when the layer is built (see `Random`).
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
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
  // Running sums of the weights of the last candidate array seen twice (nearly always the whole
  // pool: a first attempt under no gate), so a draw over it is a binary search, not a pass.
  let seen: ReadonlyArray<Key.Key> | undefined
  let summed: ReadonlyArray<Key.Key> | undefined
  let sums = new Float64Array(0)
  return candidateSelector(pool, yield* Effect.clock, (c) => {
    if (c === summed) {
      // The first key whose running sum passes the draw, as the pass below finds it.
      const r = prng.integer(sums[c.length - 1]!)
      let lo = 0
      let hi = c.length - 1
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (sums[mid]! > r) hi = mid
        else lo = mid + 1
      }
      return c[lo]!
    }
    let total = 0
    for (const k of c) total += k.weight
    if (c === seen) {
      summed = c
      sums = new Float64Array(c.length)
      let run = 0
      for (let i = 0; i < c.length; i++) sums[i] = run += c[i]!.weight
    }
    seen = c
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
