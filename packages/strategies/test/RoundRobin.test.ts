import { describe, expect, it } from "@effect/vitest"
import { KeySelector } from "@or-balancer/core"
import { RoundRobin } from "@or-balancer/strategies"
import { Effect, FastCheck as fc, Layer } from "effect"
import { base, keys, pick, picks, refuse } from "./util.js"

const env = (ids: ReadonlyArray<string>) => RoundRobin.layer().pipe(Layer.provideMerge(base(keys(...ids))))

describe("RoundRobin", () => {
  it.effect("takes each key in turn", () =>
    Effect.gen(function* () {
      expect(yield* picks(7)).toEqual(["a", "b", "c", "a", "b", "c", "a"])
    }).pipe(Effect.provide(env(["a", "b", "c"])))
  )

  it.effect("skips tried and gated keys without skewing the others", () =>
    Effect.gen(function* () {
      expect(yield* picks(4, { gate: refuse("b") })).toEqual(["a", "c", "a", "c"])
      expect(yield* pick({ tried: new Set(["a"]) })).toBe("b")
      expect(yield* picks(3)).toEqual(["c", "a", "b"])
    }).pipe(Effect.provide(env(["a", "b", "c"])))
  )

  it.effect("fails with NoKeyAvailable when nothing is eligible", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(pick({ tried: new Set(["a", "b"]) }))
      expect(error).toBeInstanceOf(KeySelector.NoKeyAvailable)
      expect(error.reason).toBe("tried")
      const gated = yield* Effect.flip(pick({ gate: () => ({ reason: "cooldown", until: 5_000 }) }))
      expect(gated.reason).toBe("cooldown")
      expect(gated.retryAfter).toBeDefined()
    }).pipe(Effect.provide(env(["a", "b"])))
  )

  it.effect.prop(
    "eligible keys share exactly whatever is refused",
    {
      n: fc.integer({ min: 2, max: 7 }),
      refused: fc.array(fc.nat(6), { maxLength: 5 }),
      cycles: fc.integer({ min: 1, max: 5 })
    },
    ({ cycles, n, refused }) => {
      const ids = Array.from({ length: n }, (_, i) => `k${i}`)
      const out = refused.filter((i) => i < n).map((i) => `k${i}`)
      const eligible = ids.filter((id) => !out.includes(id))
      return Effect.gen(function* () {
        const got = yield* picks(eligible.length * cycles, { gate: refuse(...out) })
        if (eligible.length === 0) return
        for (const id of eligible) expect(got.filter((g) => g === id).length).toBe(cycles)
      }).pipe(
        Effect.catchTag("NoKeyAvailable", (e) =>
          Effect.sync(() => expect(eligible.length === 0 && e.reason).toBe("ineligible"))
        ),
        Effect.provide(env(ids))
      )
    },
    { fastCheck: { numRuns: 60 } }
  )
})
