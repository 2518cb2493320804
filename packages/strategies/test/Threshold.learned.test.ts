import { assert, describe, it } from "@effect/vitest"
import { CreditLookup, KeySelector } from "@or-balancer/core"
import { CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Effect, Either, Layer } from "effect"
import { base, keys, request } from "./util.js"

// Threshold's default estimate, learned from the answers' cost (issue 14): with no explicit
// `estimate`, a capped key under concurrency ends at exactly its cap. The upstream here is
// OpenRouter's as the simulator models it: a key's cap is checked when a request arrives and the
// request billed when it ends, so a request let through on credit already held by others in
// flight is billed past the cap. Money in integer nano-dollars, as the ledger keeps it.

const NANO = 1_000_000_000
const CAP = 50_000_000 // $0.05: five requests at $0.01
const PRICE = 10_000_000

const stack = (options: Partial<Threshold.Options>) =>
  Effect.gen(function* () {
    const memory = yield* CreditLookup.makeMemory({
      capped: CreditLookup.keyInfo(CAP / NANO),
      steady: CreditLookup.keyInfo(10)
    })
    return Threshold.layer({ threshold: 0.001, stay: false, ...options }).pipe(
      Layer.provideMerge(RoundRobin.layer()),
      Layer.provideMerge(CreditLedger.layer({ ttl: "60 seconds", refreshAhead: 1 })),
      Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
      Layer.provideMerge(base(keys("capped", "steady")))
    )
  })

/**
 * Waves of requests in flight at once (`widths`, one per wave), each at `price` nano-dollars: all
 * selected, then each checked against the key's cap on arrival (billed so far < cap), then all answered.
 */
const load = (widths: ReadonlyArray<number>, price = PRICE, model = "m") =>
  Effect.gen(function* () {
    const s = yield* KeySelector.KeySelector
    const billed = new Map<string, number>()
    const served = new Map<string, number>()
    for (const width of widths) {
      const leases: Array<KeySelector.Lease> = []
      for (let i = 0; i < width; i++) {
        const l = yield* Effect.either(KeySelector.toEffect(s.decide(request({ model }))))
        if (Either.isRight(l)) leases.push(l.right)
      }
      const admitted = leases.map(
        (l) => (billed.get(l.key.id) ?? 0) < (l.key.id === "capped" ? CAP : Infinity)
      )
      leases.forEach((l, i) => {
        if (!admitted[i]) return void l.unsafeReport(KeySelector.cancelled())
        billed.set(l.key.id, (billed.get(l.key.id) ?? 0) + price)
        served.set(l.key.id, (served.get(l.key.id) ?? 0) + 1)
        l.unsafeReport(KeySelector.success("1 second", price / NANO))
      })
    }
    return { billed: billed.get("capped") ?? 0, served: served.get("capped") ?? 0 }
  })

const FIRST_ALONE = [1, 12, 12, 12, 12]

const reservedOn = (id: string) =>
  Effect.flatMap(CreditLedger.CreditLedger, (l) =>
    Effect.map(l.snapshot, (entries) => Math.round(entries.find((e) => e.id === id)!.reserved * NANO))
  )

/** Selects once for `model` and keeps the lease open; what it reserved on its key. */
const reserveOnce = (model: string) =>
  Effect.gen(function* () {
    const s = yield* KeySelector.KeySelector
    const l = yield* KeySelector.toEffect(s.decide(request({ model })))
    const held = yield* reservedOn(l.key.id)
    l.unsafeReport(KeySelector.cancelled())
    return held
  })

const answer = (model: string, cost: number) =>
  Effect.gen(function* () {
    const s = yield* KeySelector.KeySelector
    const l = yield* KeySelector.toEffect(s.decide(request({ model })))
    l.unsafeReport(KeySelector.success("1 second", cost / NANO))
  })

describe("Threshold's learned estimate", () => {
  it.effect("without an explicit estimate, a capped key ends at exactly its cap under concurrency", () =>
    Effect.gen(function* () {
      // From the first settled answer: one request alone, then waves of 12 at once.
      const learned = yield* Effect.provide(load(FIRST_ALONE), yield* stack({}))
      assert.deepStrictEqual(learned, { billed: CAP, served: 5 })
      // Control: reserving nothing, the same load is billed past the cap.
      const none = yield* Effect.provide(load(FIRST_ALONE), yield* stack({ estimate: 0 }))
      assert.isAbove(none.billed, CAP)
    })
  )

  it.effect(
    "before any answer the threshold is reserved: a cold burst at the threshold's price keeps the cap",
    () =>
      Effect.gen(function* () {
        const cold = yield* Effect.provide(load([12, 12, 12, 12]), yield* stack({ threshold: 0.01 }))
        assert.deepStrictEqual(cold, { billed: CAP, served: 5 })
        const none = yield* Effect.provide(
          load([12, 12, 12, 12]),
          yield* stack({ threshold: 0.01, estimate: 0 })
        )
        assert.isAbove(none.billed, CAP)
      })
  )

  it.effect(
    "an EWMA-max per model: a dearer answer raises it at once, a cheaper one lowers it by 1/16 of the gap",
    () =>
      Effect.gen(function* () {
        yield* Effect.gen(function* () {
          assert.strictEqual(yield* reserveOnce("a"), 1_000_000) // nothing answered: the threshold
          yield* answer("a", 10_000_000)
          assert.strictEqual(yield* reserveOnce("a"), 10_000_000)
          yield* answer("a", 30_000_000)
          assert.strictEqual(yield* reserveOnce("a"), 30_000_000)
          yield* answer("a", 10_000_000)
          assert.strictEqual(yield* reserveOnce("a"), 30_000_000 - 20_000_000 / 16)
          // A model with no answer yet: what answers of any model cost.
          assert.strictEqual(yield* reserveOnce("b"), 30_000_000 - 20_000_000 / 16)
          yield* answer("b", 2_000_000)
          assert.strictEqual(yield* reserveOnce("b"), 2_000_000)
          assert.strictEqual(yield* reserveOnce("a"), 30_000_000 - 20_000_000 / 16)
        }).pipe(Effect.provide(yield* stack({})))
        // An explicit estimate wins over what the answers cost.
        yield* Effect.gen(function* () {
          yield* answer("a", 30_000_000)
          assert.strictEqual(yield* reserveOnce("a"), 5_000_000)
        }).pipe(Effect.provide(yield* stack({ estimate: 0.005 })))
      })
  )
})
