import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, StateStore } from "@or-balancer/core"
import { CreditLedger } from "@or-balancer/strategies"
import { Effect } from "effect"
import { key } from "./util.js"

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
