import { describe, expect, it } from "@effect/vitest"
import { Random as RandomStrategy, WeightedRandom } from "@or-balancer/strategies"
import { Effect, Layer, Random } from "effect"
import { base, key, keys, picks, refuse } from "./util.js"

const seeded = <A, E, R>(seed: number, self: Effect.Effect<A, E, R>) =>
  Effect.withRandom(self, Random.make(seed))

describe("Random", () => {
  // The generator is seeded from `Random` when the layer is built: pin it there.
  const stack = Layer.fresh(RandomStrategy.layer.pipe(Layer.provideMerge(base(keys("a", "b", "c", "d")))))
  const run = (seed: number) => seeded(seed, Effect.provide(picks(50, { gate: refuse("b") }), stack))

  it.effect("is deterministic under a pinned Random and only picks candidates", () =>
    Effect.gen(function* () {
      const first = yield* run(7)
      const again = yield* run(7)
      expect(again).toEqual(first)
      expect(yield* run(8)).not.toEqual(first)
      expect(first).not.toContain("b")
      expect(new Set(first)).toEqual(new Set(["a", "c", "d"]))
    })
  )
})

describe("WeightedRandom", () => {
  it.effect("draws in proportion to the weights", () =>
    Effect.gen(function* () {
      const got = yield* picks(8000)
      const share = (id: string) => got.filter((g) => g === id).length / got.length
      expect(share("a")).toBeGreaterThan(0.55)
      expect(share("a")).toBeLessThan(0.65)
      expect(share("b")).toBeGreaterThan(0.25)
      expect(share("b")).toBeLessThan(0.35)
      expect(share("c")).toBeGreaterThan(0.07)
      expect(share("c")).toBeLessThan(0.13)
      const skipped = yield* picks(200, { tried: new Set(["a"]) })
      expect(skipped).not.toContain("a")
    }).pipe(
      Effect.provide(
        WeightedRandom.layer.pipe(
          Layer.provideMerge(
            base([key("a", { weight: 6 }), key("b", { weight: 3 }), key("c", { weight: 1 })])
          )
        )
      ),
      // The generator is seeded from this Random when the layer is built.
      Effect.withRandom(Random.make(11))
    )
  )
})
