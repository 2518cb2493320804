import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, type KeyPool, type KeySelector, type StateStore } from "@or-balancer/core"
import { ByModel, CreditAware, CreditLedger, RoundRobin, Weighted } from "@or-balancer/strategies"
import { Effect, Layer } from "effect"
import { expectTypeOf } from "vitest"
import { base, key, keys, pick, picks } from "./util.js"

const env = ByModel.layer([
  { pattern: "anthropic/*", keys: ["a", "b"], strategy: RoundRobin.layer({ name: "anthropic" }) },
  { pattern: "openai/gpt-4o", keys: ["c", "d"] }
]).pipe(
  Layer.provideMerge(Weighted.layer()),
  Layer.provideMerge(base([key("a"), key("b"), key("c"), key("d", { models: ["openai/gpt-4o-mini"] })]))
)

describe("ByModel", () => {
  it.effect("routes by the first matching pattern, within the route's keys and each key's own models", () =>
    Effect.gen(function* () {
      expect(yield* picks(4, { model: "anthropic/claude-sonnet-4" })).toEqual(["a", "b", "a", "b"])
      // d lists only gpt-4o-mini, so gpt-4o goes to c alone.
      expect(yield* picks(3, { model: "openai/gpt-4o" })).toEqual(["c", "c", "c"])
    }).pipe(Effect.provide(env))
  )

  it.effect("a model no route matches is a clear error naming it and the known patterns", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(picks(1, { model: "mistral/large" }))
      expect(error.reason).toBe("model")
      expect(error.message).toContain("mistral/large")
      expect(error.message).toContain("anthropic/*, openai/gpt-4o")
    }).pipe(Effect.provide(env))
  )
})

describe("ByModel: wildcard and typed routes", () => {
  const withWildcard = ByModel.layer([
    { pattern: "anthropic/*", keys: ["a"] },
    { pattern: "*", keys: ["b", "c"] }
  ]).pipe(Layer.provideMerge(RoundRobin.layer()), Layer.provideMerge(base(keys("a", "b", "c"))))

  it.effect("`*` takes every model no other route matches, and requests without a model", () =>
    Effect.gen(function* () {
      expect(yield* picks(2, { model: "anthropic/claude-sonnet-4" })).toEqual(["a", "a"])
      expect(yield* picks(2, { model: "mistral/large" })).toEqual(["b", "c"])
      expect(yield* picks(2)).toEqual(["b", "c"])
    }).pipe(Effect.provide(withWildcard))
  )

  it.effect("a route's strategy adds its requirements to the layer's type", () =>
    Effect.gen(function* () {
      const routes = [
        { pattern: "openai/*", strategy: CreditAware.layer() },
        { pattern: "*", strategy: RoundRobin.layer({ name: "rest" }) }
      ]
      const layer = ByModel.layer(routes)
      expectTypeOf<Layer.Layer.Context<typeof layer>>().toEqualTypeOf<
        KeySelector.KeySelector | KeyPool.KeyPool | StateStore.StateStore | CreditLedger.CreditLedger
      >()
      expectTypeOf<Layer.Layer.Error<typeof layer>>().toEqualTypeOf<never>()
      // And it runs once they are provided.
      const env = layer.pipe(
        Layer.provideMerge(RoundRobin.layer()),
        Layer.provideMerge(CreditLedger.layer()),
        Layer.provideMerge(
          CreditLookup.layerMemory({ a: CreditLookup.keyInfo(1), b: CreditLookup.keyInfo(9) })
        ),
        Layer.provideMerge(base(keys("a", "b")))
      )
      expect(yield* pick({ model: "openai/gpt-4o" }).pipe(Effect.provide(env))).toBe("b")
    })
  )
})
