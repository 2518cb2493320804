import { describe, expect, it } from "@effect/vitest"
import { KeySelector } from "@or-balancer/core"
import { LeastBusy } from "@or-balancer/strategies"
import { Effect, Exit, Layer, Random, Scope } from "effect"
import { base, key, keys, request } from "./util.js"

const hold = (scope: Scope.Scope) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    Effect.map(Scope.extend(KeySelector.scoped(s, request()), scope), (l) => l.key.id)
  )

describe("LeastBusy", () => {
  it.effect("sends the next request to the less loaded key and counts in-flight per lease scope", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const first = yield* hold(scope)
      const second = yield* hold(scope)
      expect(second).not.toBe(first)
      const held = yield* Effect.forEach(Array.from({ length: 8 }), () => hold(scope))
      // With two keys both are always compared: the loads stay level.
      expect(held.filter((id) => id === "a").length).toBe(4)
      expect((yield* LeastBusy.inFlight).get("a")).toBe(5)
      yield* Scope.close(scope, Exit.void)
      expect((yield* LeastBusy.inFlight).get("a")).toBe(0)
      expect((yield* LeastBusy.inFlight).get("b")).toBe(0)
    }).pipe(
      Effect.provide(LeastBusy.layer.pipe(Layer.provideMerge(base(keys("a", "b"))))),
      // After the layer: its generator is seeded from this Random when it is built.
      Effect.withRandom(Random.make(1))
    )
  )

  it.effect("respects weights: in-flight load settles in proportion", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const held = yield* Effect.forEach(Array.from({ length: 40 }), () => hold(scope))
      const a = held.filter((id) => id === "a").length
      expect(a).toBeGreaterThanOrEqual(29)
      expect(a).toBeLessThanOrEqual(31)
    }).pipe(
      Effect.provide(LeastBusy.layer.pipe(Layer.provideMerge(base([key("a", { weight: 3 }), key("b")])))),
      // After the layer: its generator is seeded from this Random when it is built.
      Effect.withRandom(Random.make(5))
    )
  )

  it.effect("a lease reported twice brings its count down once", () =>
    Effect.gen(function* () {
      const selector = yield* KeySelector.KeySelector
      const kept = yield* selector.select(request())
      const lease = yield* selector.select(request())
      yield* lease.report(KeySelector.success(1))
      yield* lease.report(KeySelector.success(1))
      const counts = yield* LeastBusy.inFlight
      expect(counts.get(kept.key.id)).toBe(1)
      expect(counts.get(lease.key.id)).toBe(lease.key.id === kept.key.id ? 1 : 0)
    }).pipe(
      Effect.provide(LeastBusy.layer.pipe(Layer.provideMerge(base(keys("a", "b"))))),
      // After the layer: its generator is seeded from this Random when it is built.
      Effect.withRandom(Random.make(1))
    )
  )
})
