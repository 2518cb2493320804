import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeySelector, StateStore } from "@or-balancer/core"
import { CreditAware, CreditLedger } from "@or-balancer/strategies"
import { Effect, Layer } from "effect"
import { base, key, request } from "./util.js"

describe("CreditLedger", () => {
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

describe("CreditLedger money", () => {
  it.effect("adds up exactly: a $0.50 key at $0.01 a request serves exactly 50", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({ a: CreditLookup.keyInfo(0.5) })
      const stack = CreditAware.layer({ estimate: 0.01 }).pipe(
        Layer.provideMerge(CreditLedger.layer({ ttl: "60 seconds" })),
        Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
        Layer.provideMerge(base([key("a")]))
      )
      yield* Effect.gen(function* () {
        const selector = yield* KeySelector.KeySelector
        let served = 0
        for (;;) {
          const lease = yield* Effect.either(selector.select(request()))
          if (lease._tag === "Left") {
            expect(lease.left.reason).toBe("credit")
            break
          }
          yield* lease.right.report(KeySelector.success(1, 0.01))
          served++
          if (served > 60) break
        }
        expect(served).toBe(50)
        const [entry] = yield* (yield* CreditLedger.CreditLedger).snapshot
        expect(entry).toMatchObject({ id: "a", spent: 0.5, reserved: 0, available: 0 })
      }).pipe(Effect.provide(stack))
    })
  )
})
