import { describe, expect, it } from "@effect/vitest"
import { Balancer, Key, KeyPool, KeySelector, Monitor, StateStore, UpstreamError } from "@or-balancer/core"
import { Effect, Layer, Redacted } from "effect"

const keys = ["a", "b"].map((id) => Key.make({ id, secret: Redacted.make(`sk-or-v1-${id.repeat(12)}`) }))

// The simplest strategy: first candidate in pool order.
const First = Layer.effect(
  KeySelector.KeySelector,
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    return KeySelector.make((request) =>
      Effect.flatMap(pool.get, (ks) => {
        const c = KeySelector.candidates(request, ks)
        return c.length > 0
          ? Effect.succeed(KeySelector.lease(c[0]!))
          : Effect.fail(KeySelector.explain(request, ks, 0))
      })
    )
  })
)

const env = Balancer.layer().pipe(
  Layer.provide(First),
  Layer.provideMerge(Layer.mergeAll(KeyPool.layer(keys), Monitor.layer, StateStore.layerMemory))
)

describe("smoke", () => {
  it.effect("fails over", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const result = yield* balancer.run({}, (key) =>
        key.id === "a"
          ? Effect.fail(new UpstreamError.InsufficientCredits({ message: "no" }))
          : Effect.succeed(key.id)
      )
      expect(result).toBe("b")
    }).pipe(Effect.provide(env))
  )
})
