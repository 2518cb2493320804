/**
 * OpenRouter's limit semantics in HealthAware (issue 14, item 4): a key refused for its own limit
 * with a known reset is out until then (not for a capped cooldown), a probe that finds nothing left
 * under a key's limit keeps it out until its `limit_reset`, and a refusal for the account's
 * credits takes every key of that account out, panic or not.
 */
import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeySelector, UpstreamError } from "@or-balancer/core"
import { HealthAware, RoundRobin } from "@or-balancer/strategies"
import { Effect, Layer, TestClock } from "effect"
import { base, key, keys, pick, picks, request } from "./util.js"

const env = (ks: ReadonlyArray<ReturnType<typeof key>>, options: HealthAware.Options = {}) =>
  HealthAware.layer({
    baseCooldown: "1 second",
    maxCooldown: "5 minutes",
    panicThreshold: 1,
    ...options
  }).pipe(Layer.provideMerge(RoundRobin.layer()), Layer.provideMerge(base(ks)))

const only = (id: string) => ({
  gate: (k: { id: string }) => (k.id === id ? undefined : { reason: "ineligible" as const })
})

/** One attempt on `id`, failing with `error`. */
const failOn = (id: string, error: UpstreamError.UpstreamError) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    Effect.flatMap(s.select(request(only(id))), (l) => l.report(KeySelector.failure("1 second", error)))
  )

const stateOf = (id: string) => Effect.map(HealthAware.status(), (s) => s.keys.find((k) => k.id === id)!)

const NOON = Date.UTC(2026, 0, 5, 12)
const MIDNIGHT = Date.UTC(2026, 0, 6)

describe("HealthAware and OpenRouter's credit limits", () => {
  it.effect('a 403 "Key limit exceeded" with resets_at keeps the key out until then, past maxCooldown', () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOON)
      yield* failOn(
        "a",
        new UpstreamError.InsufficientCredits({
          message: "Key limit exceeded",
          scope: "key",
          until: MIDNIGHT
        })
      )
      expect((yield* stateOf("a")).until).toBe(MIDNIGHT)
      yield* TestClock.adjust("11 hours")
      expect(yield* picks(3)).toEqual(["b", "b", "b"])
      yield* TestClock.setTime(MIDNIGHT)
      expect((yield* stateOf("a")).state).toBe("half-open")
      expect(yield* pick()).toBe("a")
    }).pipe(Effect.provide(env(keys("a", "b"))))
  )

  it.effect("a probe finding nothing left under the key's limit keeps it out until its limit_reset", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOON)
      const memory = yield* CreditLookup.makeMemory({
        a: { ...CreditLookup.keyInfo(0, 1), limitReset: "daily" }
      })
      yield* Effect.gen(function* () {
        yield* failOn("a", new UpstreamError.InsufficientCredits({ message: "402", scope: "key" }))
        yield* TestClock.adjust("1 second")
        // The probe answers (the key is alive) but its limit is spent: out until midnight.
        expect(yield* pick()).toBe("b")
        expect(yield* memory.lookups("a")).toBe(1)
        expect((yield* stateOf("a")).until).toBe(MIDNIGHT)
        yield* memory.set("a", { ...CreditLookup.keyInfo(1, 1), limitReset: "daily" })
        yield* TestClock.setTime(MIDNIGHT)
        expect(yield* picks(2)).toContain("a")
      }).pipe(
        Effect.provide(
          env(keys("a", "b"), { recovery: "probe" }).pipe(
            Layer.provide(Layer.succeed(CreditLookup.CreditLookup, memory.service))
          )
        )
      )
    })
  )

  it.effect(
    "openrouter_credits takes every key of the account out, even in panic; the other account serves",
    () =>
      Effect.gen(function* () {
        yield* failOn("a1", new UpstreamError.InsufficientCredits({ message: "402", scope: "account" }))
        for (const id of ["a1", "a2", "a3"]) {
          const s = yield* stateOf(id)
          expect([id, s.state]).toEqual([id, "ejected"])
        }
        expect((yield* stateOf("a2")).reason).toBe("InsufficientCredits (account one)")
        // 3 of 4 out is panic, but keys of an account without credit would only refuse again.
        expect((yield* HealthAware.status(0.5)).panic).toBe(true)
        expect(yield* picks(4)).toEqual(["b1", "b1", "b1", "b1"])
        // A 402 for the key's own limit leaves the rest of its account alone.
        yield* TestClock.adjust("1 second")
        yield* failOn("a1", new UpstreamError.InsufficientCredits({ message: "402", scope: "key" }))
        expect((yield* stateOf("a2")).state).not.toBe("ejected")
      }).pipe(
        Effect.provide(
          env(
            [
              key("a1", { account: "one" }),
              key("a2", { account: "one" }),
              key("a3", { account: "one" }),
              key("b1", { account: "two" })
            ],
            { panicThreshold: 0.5 }
          )
        )
      )
  )
})
