/**
 * A key's `limit_reset` period (daily, weekly, monthly, at 00:00 UTC) bounds its cached credit
 * lookup: credit-aware and threshold look it up again as the period rolls over and re-admit it,
 * without waiting for a 402 or the ledger's TTL.
 */
import { describe, expect, it } from "@effect/vitest"
import { CreditLookup } from "@or-balancer/core"
import { CreditAware, CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Effect, Layer, TestClock } from "effect"
import { base, keys, pick } from "./util.js"

const daily = (remaining: number, limit: number, reset: CreditLookup.KeyInfo["limitReset"]) => ({
  ...CreditLookup.keyInfo(remaining, limit),
  limitReset: reset
})

const stacks = {
  "credit-aware": CreditAware.layer({ estimate: 0.1 }),
  threshold: Threshold.layer({ threshold: 0.5 }).pipe(Layer.provideMerge(RoundRobin.layer()))
}

describe("re-admission at limit_reset", () => {
  for (const [name, selector] of Object.entries(stacks)) {
    for (const reset of ["daily", null] as const) {
      it.effect(
        `${name}: an exhausted key with limit_reset ${reset} ${reset === null ? "waits for the TTL" : "is back at 00:00 UTC"}`,
        () =>
          Effect.gen(function* () {
            // One minute before midnight UTC; the ledger's TTL is an hour.
            yield* TestClock.setTime(Date.UTC(2026, 0, 5, 23, 59))
            const memory = yield* CreditLookup.makeMemory({ a: daily(0, 1, reset) })
            const layer = selector.pipe(
              Layer.provideMerge(CreditLedger.layer({ ttl: "60 minutes" })),
              Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
              Layer.provideMerge(base(keys("a")))
            )
            yield* Effect.gen(function* () {
              expect((yield* Effect.flip(pick())).reason).toBe("credit")
              // OpenRouter's cap is whole again from midnight.
              yield* memory.set("a", daily(1, 1, reset))
              yield* TestClock.adjust("61 seconds")
              if (reset === null) expect((yield* Effect.flip(pick())).reason).toBe("credit")
              else expect(yield* pick()).toBe("a")
            }).pipe(Effect.provide(layer))
          })
      )
    }
  }
})
