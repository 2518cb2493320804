import { describe, expect, it } from "@effect/vitest"
import { KeyPool, KeySelector } from "@or-balancer/core"
import { ConcurrencyLimited } from "@or-balancer/strategies"
import { Effect, Either, Fiber, Layer, TestClock } from "effect"
import { base, key, request } from "./util.js"

// A permit freed on a key the inner selector will not lease (out of credit, say) must not bounce
// between waiters forever: found by the lease property test as a hang (a 402 on one key, two
// requests waiting), with every waiter refusing the key in turn in zero time.

describe("ConcurrencyLimited, a freed key the inner selector refuses", () => {
  it.effect(
    "is not handed back and forth between waiters; they wait on, for another key or their deadline",
    () => {
      let refuseA = false
      // First candidate in pool order, refusing `a` once it is "out of credit".
      const inner = Layer.effect(
        KeySelector.KeySelector,
        Effect.map(KeyPool.KeyPool, (pool) =>
          KeySelector.make((req) =>
            Effect.flatMap(pool.get, (ks) => {
              const c = KeySelector.candidates(req, ks).filter((k) => !(refuseA && k.id === "a"))
              return c.length === 0
                ? Effect.fail(new KeySelector.NoKeyAvailable({ reason: "credit", message: "no credit" }))
                : Effect.succeed(KeySelector.lease(c[0]!))
            })
          )
        )
      )
      return Effect.gen(function* () {
        const limited = yield* ConcurrencyLimited.makeWithStatus()
        const s = limited.selector
        const la = yield* s.select(request())
        const lb = yield* s.select(request())
        expect([la.key.id, lb.key.id]).toEqual(["a", "b"])
        const waiter = Effect.either(s.select(request({ deadline: 1_000 })))
        const w1 = yield* Effect.fork(waiter)
        const w2 = yield* Effect.fork(waiter)
        yield* TestClock.adjust(1)
        expect((yield* limited.status).waiting).toBe(2)

        refuseA = true
        yield* la.report(KeySelector.cancelled())
        yield* TestClock.adjust(1)
        const after = yield* limited.status
        expect(after.waiting).toBe(2)
        expect(after.inUse.get("a") ?? 0).toBe(0)

        // b's permit goes to one waiter; the other fails at its deadline.
        yield* lb.report(KeySelector.cancelled())
        yield* TestClock.adjust(1_000)
        const results = [yield* Fiber.join(w1), yield* Fiber.join(w2)]
        expect(results.filter(Either.isRight).map((r) => r.right.key.id)).toEqual(["b"])
        expect(results.filter(Either.isLeft).map((l) => l.left.reason)).toEqual(["concurrency"])
      }).pipe(
        Effect.provide(
          Layer.provideMerge(inner, base([key("a", { maxConcurrency: 1 }), key("b", { maxConcurrency: 1 })]))
        )
      )
    }
  )
})
