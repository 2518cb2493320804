import { describe, expect, it } from "@effect/vitest"
import { Weighted } from "@or-balancer/strategies"
import { Effect, FastCheck as fc, Layer } from "effect"
import { base, key, picks, refuse } from "./util.js"

const env = (weights: ReadonlyArray<number>) =>
  Weighted.layer().pipe(Layer.provideMerge(base(weights.map((weight, i) => key(`k${i}`, { weight })))))

describe("Weighted (smooth weighted round robin)", () => {
  it.effect("5:1:1 gives a a b a c a a, with no burst", () =>
    Effect.gen(function* () {
      const got = yield* picks(14)
      const name = (id: string) => ({ k0: "a", k1: "b", k2: "c" })[id]
      expect(got.map(name).join(" ")).toBe("a a b a c a a a a b a c a a")
    }).pipe(Effect.provide(env([5, 1, 1])))
  )

  it.effect.prop(
    "each key's share is exact in every full cycle",
    {
      weights: fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 6 }),
      cycles: fc.integer({ min: 1, max: 4 })
    },
    ({ cycles, weights }) =>
      Effect.gen(function* () {
        const total = weights.reduce((a, b) => a + b, 0)
        for (let c = 0; c < cycles; c++) {
          const got = yield* picks(total)
          weights.forEach((w, i) => expect(got.filter((id) => id === `k${i}`).length).toBe(w))
        }
      }).pipe(Effect.provide(env(weights))),
    { fastCheck: { numRuns: 60 } }
  )

  it.effect.prop(
    "skipping an ineligible key keeps the others' proportions exact",
    {
      weights: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 2, maxLength: 6 }),
      out: fc.nat(5),
      warmup: fc.nat(10)
    },
    ({ out, warmup, weights }) => {
      const refused = `k${out % weights.length}`
      return Effect.gen(function* () {
        yield* picks(warmup) // start from an arbitrary point of the cycle
        const rest = weights.filter((_, i) => `k${i}` !== refused)
        const total = rest.reduce((a, b) => a + b, 0)
        // Refused mid-cycle: the offset the warm-up left is absorbed, never more than about one weight.
        const got = yield* picks(total * 4, { gate: refuse(refused) })
        expect(got.includes(refused)).toBe(false)
        weights.forEach((w, i) => {
          const id = `k${i}`
          if (id === refused) return
          const n = got.filter((g) => g === id).length
          expect(Math.abs(n - 4 * w)).toBeLessThanOrEqual(w + 1)
        })
      }).pipe(Effect.provide(env(weights)))
    },
    { fastCheck: { numRuns: 60 } }
  )

  it.effect.prop(
    "a key refused from a cycle boundary leaves the others exact per cycle",
    {
      weights: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 2, maxLength: 6 }),
      out: fc.nat(5),
      cycles: fc.integer({ min: 1, max: 3 })
    },
    ({ cycles, out, weights }) => {
      const refused = `k${out % weights.length}`
      const total = weights.reduce((a, b) => a + b, 0)
      const rest = total - weights[out % weights.length]!
      return Effect.gen(function* () {
        yield* picks(total) // one full cycle with every key
        for (let c = 0; c < cycles; c++) {
          const got = yield* picks(rest, { gate: refuse(refused) })
          weights.forEach((w, i) =>
            expect(got.filter((g) => g === `k${i}`).length).toBe(`k${i}` === refused ? 0 : w)
          )
        }
      }).pipe(Effect.provide(env(weights)))
    },
    { fastCheck: { numRuns: 60 } }
  )
})
