import { describe, expect, it } from "@effect/vitest"
import { ByModel, RoundRobin, Weighted } from "@or-balancer/strategies"
import { Effect, Layer } from "effect"
import { base, key, picks } from "./util.js"

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
