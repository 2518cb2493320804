import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeySelector } from "@or-balancer/core"
import { CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Effect, Layer, TestClock } from "effect"
import { base, keys, request } from "./util.js"

const spend = (cost: number) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    Effect.flatMap(s.select(request()), (l) =>
      Effect.as(l.report(KeySelector.success("1 second", cost)), l.key.id)
    )
  )

describe("Threshold", () => {
  it.effect(
    "stays on a key until it falls under the threshold, fails typed when all do, re-admits on refresh",
    () =>
      Effect.gen(function* () {
        const memory = yield* CreditLookup.makeMemory({
          a: CreditLookup.keyInfo(1),
          b: CreditLookup.keyInfo(1)
        })
        const layer = Threshold.layer({ threshold: 0.5 }).pipe(
          Layer.provideMerge(RoundRobin.layer()),
          Layer.provideMerge(CreditLedger.layer({ ttl: "60 seconds" })),
          Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
          Layer.provideMerge(base(keys("a", "b")))
        )
        yield* Effect.gen(function* () {
          expect(yield* spend(0.3)).toBe("a")
          expect(yield* spend(0.3)).toBe("a") // 0.7 left before: still above 0.5
          expect(yield* spend(0.3)).toBe("b") // a has 0.4: move on
          expect(yield* spend(0.6)).toBe("b")
          const error = yield* Effect.flip(spend(0))
          expect(error.reason).toBe("credit")
          expect(error.retryAfter).toBeDefined()
          yield* memory.set("b", CreditLookup.keyInfo(0.4, 1)) // what OpenRouter now says of b
          yield* memory.set("a", CreditLookup.keyInfo(1)) // a's limit reset
          yield* TestClock.adjust("61 seconds")
          expect(yield* spend(0.1)).toBe("a")
        }).pipe(Effect.provide(layer))
      })
  )
})
