import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeyPool, KeySelector, StateStore, UpstreamError } from "@or-balancer/core"
import { CreditLedger, HealthAware } from "@or-balancer/strategies"
import { Effect, Fiber, Layer, TestClock } from "effect"
import { base, key, request } from "./util.js"

describe("review: CreditLedger slot cache", () => {
  it.effect("two ledgers over one store never reserve on an entry the other replaced", () =>
    Effect.gen(function* () {
      const store = yield* StateStore.makeMemory
      const memory = yield* CreditLookup.makeMemory({
        a: CreditLookup.keyInfo(1),
        b: CreditLookup.keyInfo(5)
      })
      const make = CreditLedger.make({ ttl: "60 seconds" }).pipe(
        Effect.provideService(StateStore.StateStore, store),
        Effect.provideService(CreditLookup.CreditLookup, memory.service)
      )
      const one = yield* make
      const two = yield* make
      const ks = [key("a"), key("b")]
      const all = () => true
      // Both ledgers have looked up and cached their slots.
      expect((yield* one.tryReserveBest(ks, all, 0.1))?.key.id).toBe("b")
      expect((yield* two.tryReserveBest(ks, all, 0.1))?.key.id).toBe("b")
      // The first ledger hears a 402 on b: b's entry is replaced by an empty one.
      yield* one.exhaust(ks[1]!)
      // The second must see that, and its reservation must be on the stored entry.
      const held = yield* two.tryReserveBest(ks, all, 0.1)
      expect(held?.key.id).toBe("a")
      const snap = yield* one.snapshot
      expect(snap.find((e) => e.id === "a")?.reserved).toBeCloseTo(0.1)
    })
  )
})

describe("review: HealthAware trial slot", () => {
  // An inner selector that yields before it answers (as a permit wait or a credit lookup does).
  const yielding = Layer.effect(
    KeySelector.KeySelector,
    Effect.map(KeyPool.KeyPool, (pool) =>
      KeySelector.make((req) =>
        Effect.zipRight(
          Effect.yieldNow(),
          Effect.flatMap(pool.get, (ks) => {
            const k = ks.find((k) => KeySelector.isCandidate(req, k))
            return k === undefined
              ? Effect.fail(KeySelector.explain(req, ks, 0))
              : Effect.succeed(KeySelector.lease(k))
          })
        )
      )
    )
  )
  const env = HealthAware.layer({ baseCooldown: "1 second", panicThreshold: 1 }).pipe(
    Layer.provideMerge(yielding),
    Layer.provideMerge(base([key("a")]))
  )

  it.effect("selections that pass a half-open key's gate together get one trial between them", () =>
    Effect.gen(function* () {
      const selector = yield* KeySelector.KeySelector
      const first = yield* selector.select(request())
      yield* first.report(KeySelector.failure(0, new UpstreamError.Unauthorized({ message: "401" })))
      yield* TestClock.setTime(1_000) // a is half-open
      const fibers = yield* Effect.forEach([1, 2, 3], () =>
        Effect.fork(Effect.either(selector.select(request())))
      )
      const results = yield* Effect.forEach(fibers, Fiber.join)
      const trials = results.flatMap((r) => (r._tag === "Right" ? [r.right] : []))
      expect(trials.length).toBe(1)
      for (const r of results) if (r._tag === "Left") expect(r.left.reason).toBe("unhealthy")
      // The one trial ends without a verdict: the next selection is the next trial.
      yield* trials[0]!.report(KeySelector.cancelled())
      const next = yield* selector.select(request())
      expect(next.key.id).toBe("a")
      expect((yield* Effect.flip(selector.select(request()))).reason).toBe("unhealthy")
      yield* next.report(KeySelector.success(0, 0))
      const status = yield* HealthAware.status(1)
      expect(status.keys[0]!.state).toBe("healthy")
    }).pipe(Effect.provide(env))
  )
})
