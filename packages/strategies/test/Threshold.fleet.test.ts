import { assert, describe, it } from "@effect/vitest"
import { CreditLookup, KeySelector } from "@or-balancer/core"
import { CreditLedger, CreditShare, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Effect, Layer } from "effect"
import { base, keys, request } from "./util.js"

// Threshold within a fleet's `CreditShare` (the slice of each key's credit this replica holds, as
// `@or-balancer/redis` leases it): it reserves only within the slice, asks the fleet for more
// before it moves off its key, and refuses only when no slice can be had. A stand-in share here,
// with slices in nano-dollars; the Redis one is tested by the gateway's fleet tests.

const PRICE = 10_000_000 // $0.01

const shareOf = (slices: Record<string, number>, onGrow: (ids: ReadonlyArray<string>) => void) => {
  const held = { ...slices }
  const service: CreditShare.Service = {
    covers: (id, amount) => (held[id] ?? 0) >= amount,
    take: (id, amount) => void (held[id] = (held[id] ?? 0) - amount),
    settle: (id, amount, cost) => void (held[id] = (held[id] ?? 0) + amount - cost),
    grow: (ids) => Effect.sync(() => onGrow(ids)),
    lookup: (_key, run) => run
  }
  return { held, service }
}

const stack = (share: CreditShare.Service) =>
  Effect.gen(function* () {
    const memory = yield* CreditLookup.makeMemory({ a: CreditLookup.keyInfo(1), b: CreditLookup.keyInfo(1) })
    return Threshold.layer({ threshold: 0.01, estimate: 0.01 }).pipe(
      Layer.provideMerge(RoundRobin.layer()),
      Layer.provideMerge(CreditLedger.layer({ ttl: "60 seconds", refreshAhead: 1 })),
      Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
      Layer.provideMerge(Layer.succeed(CreditShare.CreditShare, share)),
      Layer.provideMerge(base(keys("a", "b")))
    )
  })

const select = Effect.flatMap(KeySelector.KeySelector, (s) =>
  Effect.either(KeySelector.toEffect(s.decide(request())))
)

describe("Threshold within a fleet's credit share", () => {
  it.effect(
    "reserves within its slice; a short slice is grown before it moves on; none left is refused",
    () =>
      Effect.gen(function* () {
        const grown: Array<ReadonlyArray<string>> = []
        // a's slice holds two requests; b's one. The ledger thinks both keys have $1.
        const { held, service } = shareOf({ a: 2 * PRICE, b: PRICE }, (ids) => {
          grown.push(ids)
          // The fleet hands a one more unit the first time it is asked.
          if (grown.length === 1) held.a = (held.a ?? 0) + PRICE
        })
        yield* Effect.gen(function* () {
          const ids: Array<string> = []
          for (let i = 0; i < 3; i++) {
            const l = yield* select
            assert.isTrue(l._tag === "Right")
            if (l._tag === "Right") ids.push(l.right.key.id)
          }
          // Stays on a: the third request found a's slice short, asked for a (only), got one more unit.
          assert.deepStrictEqual(ids, ["a", "a", "a"])
          assert.deepStrictEqual(grown, [["a"]])
          // a's slice is spent and the fleet gives no more: asked again, then on to b's slice.
          const fourth = yield* select
          assert.isTrue(fourth._tag === "Right" && fourth.right.key.id === "b")
          assert.deepStrictEqual(grown, [["a"], ["a"]])
          // No slice anywhere: the fleet is asked for both keys, then a typed refusal (credit).
          const fifth = yield* select
          assert.isTrue(fifth._tag === "Left")
          if (fifth._tag === "Left") assert.strictEqual(fifth.left.reason, "credit")
          assert.deepStrictEqual(grown.at(-1), ["a", "b"])
          assert.deepStrictEqual(held, { a: 0, b: 0 })
        }).pipe(Effect.provide(yield* stack(service)))
      })
  )
})
