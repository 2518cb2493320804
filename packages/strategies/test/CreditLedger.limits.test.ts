/**
 * OpenRouter's limit semantics in the credit strategies (issue 14, item 4), through credit-aware
 * and threshold over the `CreditLedger`: a key refused for its own limit (402, or 403 "Key limit
 * exceeded") is out until its next `limit_reset`, even after a lookup in between; a refusal for the
 * account's credits (`openrouter_credits`) takes every key of that account out, and the others serve.
 */
import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeySelector, UpstreamError } from "@or-balancer/core"
import { CreditAware, CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Effect, Layer, TestClock } from "effect"
import { base, key, keys, pick, request } from "./util.js"

const info = (remaining: number, reset: CreditLookup.KeyInfo["limitReset"]) => ({
  ...CreditLookup.keyInfo(remaining, 10),
  limitReset: reset
})

const stacks = {
  "credit-aware": CreditAware.layer({ estimate: 0.1 }),
  threshold: Threshold.layer({ threshold: 0.5, stay: false }).pipe(Layer.provideMerge(RoundRobin.layer()))
}

/** Selects, and reports the attempt as failed with `error` when it lands on `on`; the chosen key's id. */
const attempt = (on: string, error: UpstreamError.UpstreamError) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    KeySelector.use(
      s,
      request(),
      (l) => Effect.succeed(l.key.id),
      (exit) =>
        exit._tag === "Success" && exit.value === on
          ? KeySelector.failure(0, error)
          : KeySelector.success(0, 0)
    )
  )

const keyLimit402 = new UpstreamError.InsufficientCredits({ message: "402", scope: "key" })
const keyLimit403 = (until: number) =>
  new UpstreamError.InsufficientCredits({ message: "403 Key limit exceeded", scope: "key", until })
const accountCredits = new UpstreamError.InsufficientCredits({ message: "402", scope: "account" })

// 12:00 UTC; the lookup TTL is a minute, so lookups happen many times before midnight.
const NOON = Date.UTC(2026, 0, 5, 12)
const MIDNIGHT = Date.UTC(2026, 0, 6)

describe("credit limits by their source", () => {
  for (const [name, selector] of Object.entries(stacks)) {
    const env = (memory: CreditLookup.Service, ks = keys("a", "b")) =>
      selector.pipe(
        Layer.provideMerge(CreditLedger.layer({ ttl: "1 minute", accountRecheck: "30 seconds" })),
        Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory)),
        Layer.provideMerge(base(ks))
      )

    for (const [form, error] of [
      ["402 key limit", keyLimit402],
      ['403 "Key limit exceeded"', keyLimit403(MIDNIGHT)]
    ] as const) {
      it.effect(
        `${name}: a ${form} keeps the key out until its limit_reset, even after a credit refresh`,
        () =>
          Effect.gen(function* () {
            yield* TestClock.setTime(NOON)
            // "a" has more credit, so it is chosen first; its lookup keeps saying it has credit.
            const memory = yield* CreditLookup.makeMemory({ a: info(9, "daily"), b: info(5, "daily") })
            yield* Effect.gen(function* () {
              expect(yield* attempt("a", error)).toBe("a")
              expect(yield* pick()).toBe("b")
              // Lookups every minute for hours still say "a" has $9: it stays out until midnight.
              yield* TestClock.adjust("11 hours")
              expect(yield* pick()).toBe("b")
              yield* TestClock.adjust("59 minutes")
              expect(yield* pick()).toBe("b")
              expect(yield* memory.lookups("a")).toBeGreaterThan(1)
              // Its limit is whole again from midnight (the cached lookup of 23:59 expires just after).
              yield* TestClock.setTime(MIDNIGHT + 1000)
              expect(yield* pick()).toBe("a")
            }).pipe(Effect.provide(env(memory.service)))
          })
      )
    }

    it.effect(`${name}: a key whose limit never resets is back when a lookup shows credit`, () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(NOON)
        const memory = yield* CreditLookup.makeMemory({ a: info(9, null), b: info(5, null) })
        yield* Effect.gen(function* () {
          expect(yield* attempt("a", keyLimit402)).toBe("a")
          expect(yield* pick()).toBe("b")
          yield* TestClock.adjust("61 seconds")
          expect(yield* pick()).toBe("a")
        }).pipe(Effect.provide(env(memory.service)))
      })
    )

    it.effect(
      `${name}: openrouter_credits takes every key of the account out; the other account serves`,
      () =>
        Effect.gen(function* () {
          yield* TestClock.setTime(NOON)
          const memory = yield* CreditLookup.makeMemory({
            a1: info(9, null),
            a2: info(8, null),
            b1: info(1, null)
          })
          const pool = [
            key("a1", { account: "one" }),
            key("a2", { account: "one" }),
            key("b1", { account: "two" })
          ]
          yield* Effect.gen(function* () {
            expect(yield* attempt("a1", accountCredits)).toBe("a1")
            // a2 has credit of its own, but its account has none.
            for (let i = 0; i < 4; i++) expect(yield* pick()).toBe("b1")
            // With every key of "two" taken too, the refusal says credit and when the first is back.
            yield* attempt("b1", new UpstreamError.InsufficientCredits({ message: "402", scope: "account" }))
            const refused = yield* Effect.flip(pick())
            expect(refused.reason).toBe("credit")
            expect(refused.retryAfter).toBeDefined()
            // The bounded re-check: both accounts are tried again.
            yield* TestClock.adjust("31 seconds")
            expect(yield* pick()).toBe("a1")
          }).pipe(Effect.provide(env(memory.service, pool)))
        })
    )
  }

  it.effect("with a management key's account balance, spendable is the smaller of key and account", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOON)
      const memory = yield* CreditLookup.makeMemory(
        { a: info(9, null), b: info(5, null) },
        { one: 0.05, two: 50 }
      )
      const pool = [key("a", { account: "one" }), key("b", { account: "two" })]
      yield* Effect.gen(function* () {
        // "a" has $9 under its own limit, but its account only $0.05: less than one estimate.
        expect(yield* pick()).toBe("b")
        const ledger = yield* CreditLedger.CreditLedger
        expect((yield* ledger.snapshot).find((e) => e.id === "a")?.available).toBe(0.05)
        // Credit bought: at the next lookup "a" is the richest again.
        yield* memory.setAccount("one", 100)
        yield* TestClock.adjust("61 seconds")
        expect(yield* pick()).toBe("a")
        expect((yield* ledger.snapshot).find((e) => e.id === "a")?.available).toBe(9)
      }).pipe(
        Effect.provide(
          CreditAware.layer({ estimate: 0.1 }).pipe(
            Layer.provideMerge(CreditLedger.layer({ ttl: "1 minute" })),
            Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
            Layer.provideMerge(base(pool))
          )
        )
      )
    })
  )
})
