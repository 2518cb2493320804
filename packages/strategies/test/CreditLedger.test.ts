import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeySelector, StateStore } from "@or-balancer/core"
import { CreditAware, CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Effect, Layer, TestClock } from "effect"
import { base, decideNow, isLeaseNow, key, request } from "./util.js"

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

describe("CreditLedger refresh ahead", () => {
  const stack = (memory: CreditLookup.Service, refreshAhead?: number) =>
    Threshold.layer({ threshold: 0.1, estimate: 0.01 }).pipe(
      Layer.provideMerge(RoundRobin.layer()),
      Layer.provideMerge(CreditLedger.layer({ ttl: "60 seconds", refreshAhead })),
      Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory)),
      Layer.provideMerge(base([key("a")]))
    )

  it.effect("looks a balance up again in the background before it expires: selection stays synchronous", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({ a: CreditLookup.keyInfo(1) })
      yield* Effect.gen(function* () {
        const selector = yield* KeySelector.KeySelector
        // The first selection waits for the first lookup.
        expect(decideNow(selector, request())).toBeUndefined()
        yield* (yield* selector.select(request())).report(KeySelector.success(1, 0.01))
        expect(yield* memory.lookups("a")).toBe(1)
        // Before 80 % of the TTL: no lookup.
        yield* TestClock.adjust("47 seconds")
        const early = decideNow(selector, request())
        expect(isLeaseNow(early)).toBe(true)
        if (isLeaseNow(early)) early.unsafeReport(KeySelector.success(1, 0.01))
        yield* Effect.yieldNow()
        expect(yield* memory.lookups("a")).toBe(1)
        // Past 80 %: the selection still leases at once, and the lookup runs meanwhile, once.
        yield* TestClock.adjust("3 seconds")
        for (let i = 0; i < 3; i++) {
          const lease = decideNow(selector, request())
          expect(isLeaseNow(lease)).toBe(true)
          if (isLeaseNow(lease)) lease.unsafeReport(KeySelector.success(1, 0.01))
        }
        yield* Effect.sleep("10 millis").pipe(Effect.fork)
        yield* TestClock.adjust("10 millis")
        expect(yield* memory.lookups("a")).toBe(2)
        // Past the first answer's expiry (60 s): still synchronous, trusted until 50 + 60 s.
        yield* TestClock.adjust("20 seconds")
        const late = decideNow(selector, request())
        expect(isLeaseNow(late)).toBe(true)
        if (isLeaseNow(late)) late.unsafeReport(KeySelector.success(1, 0.01))
      }).pipe(Effect.provide(stack(memory.service)))
    })
  )

  it.effect("with refreshAhead 1, a selection past the expiry waits for the lookup, as before", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({ a: CreditLookup.keyInfo(1) })
      yield* Effect.gen(function* () {
        const selector = yield* KeySelector.KeySelector
        yield* (yield* selector.select(request())).report(KeySelector.success(1, 0.01))
        yield* TestClock.adjust("50 seconds")
        const lease = decideNow(selector, request())
        expect(isLeaseNow(lease)).toBe(true)
        if (isLeaseNow(lease)) lease.unsafeReport(KeySelector.success(1, 0.01))
        yield* Effect.yieldNow()
        expect(yield* memory.lookups("a")).toBe(1)
        yield* TestClock.adjust("11 seconds")
        expect(decideNow(selector, request())).toBeUndefined()
      }).pipe(Effect.provide(stack(memory.service, 1)))
    })
  )
})
