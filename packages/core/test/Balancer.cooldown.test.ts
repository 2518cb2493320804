// Balancer: 429s fail over, their Retry-After cools a key or an account, and a request waits
// for a cooling key up to its deadline.
import { describe, expect, it } from "@effect/vitest"
import { Balancer, Monitor } from "@or-balancer/core"
import { Clock, Duration, Effect, Fiber, Ref, TestClock } from "effect"
import { env, keys, Probe, rateLimited } from "./fixtures.js"

describe("Balancer", () => {
  it.effect("a 429 on A fails over to B; A's outcome is recorded", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const probe = yield* Probe
      const result = yield* balancer.run({ model: "m" }, (key) =>
        key.id === "a" ? Effect.fail(rateLimited(3)) : Effect.succeed(`answer from ${key.id}`)
      )
      expect(result).toBe("answer from b")
      const reports = yield* Ref.get(probe.reports)
      expect(reports.map((r) => [r.key, r.outcome._tag])).toEqual([
        ["a", "Failure"],
        ["b", "Success"]
      ])
      const a = reports[0]!.outcome
      expect(a._tag === "Failure" && a.error._tag).toBe("RateLimited")
      const stats = yield* (yield* Monitor.Monitor).stats
      expect(stats.keys.find((k) => k.id === "a")?.errors).toEqual({ RateLimited: 1 })
      expect(stats.retries).toBe(1)
    }).pipe(Effect.provide(env(keys(["a", "b"]))))
  )

  it.effect("Retry-After: 3 is waited before A is used again", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const calls: Array<string> = []
      let first = true
      const fiber = yield* balancer
        .run({}, (key) =>
          Effect.suspend(() => {
            calls.push(key.id)
            if (first) {
              first = false
              return Effect.fail(rateLimited(3))
            }
            return Effect.succeed(key.id)
          })
        )
        .pipe(Effect.fork)
      yield* TestClock.adjust("2999 millis")
      expect(calls).toEqual(["a"])
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toBe("a")
      expect(calls).toEqual(["a", "a"])
      // The cooldown is over: a new request goes to A at once.
      const cooldowns = yield* balancer.cooldowns
      expect(cooldowns).toEqual([])
    }).pipe(Effect.provide(env(keys(["a"]))))
  )

  it.effect(
    "a Retry-After cooldown is capped by maxCooldown (default 5 minutes), per key and per account",
    () =>
      Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const start = yield* Clock.currentTimeMillis
        // "Retry-After: 999999" (11 days) on a key, then on an account.
        yield* balancer.run({}, (key) => (key.id === "a" ? Effect.fail(rateLimited(999_999)) : Effect.void))
        yield* balancer.run({}, (key) =>
          key.id === "b" ? Effect.fail(rateLimited(999_999, "account")) : Effect.void
        )
        const cooldowns = yield* balancer.cooldowns
        expect(cooldowns.length).toBe(2)
        for (const c of cooldowns) expect(c.until - start).toBeLessThanOrEqual(5 * 60_000)
        yield* TestClock.adjust("5 minutes")
        expect(yield* balancer.cooldowns).toEqual([])
      }).pipe(Effect.provide(env(keys(["a", "b", "c"], { b: { account: "x" } }))))
  )

  it.effect("the cooldown also holds across requests, and account-wide 429s cool the whole account", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      yield* balancer.run({}, (key) =>
        key.id === "a" ? Effect.fail(rateLimited(10, "account")) : Effect.succeed(1)
      )
      // a and b share account x: both cool; c (account y) serves.
      const used = yield* balancer.run({}, (key) => Effect.succeed(key.id))
      expect(used).toBe("c")
      const cooldowns = yield* balancer.cooldowns
      expect(cooldowns).toEqual([{ scope: "account", id: "x", until: 10_000 }])
      yield* TestClock.adjust("10 seconds")
      expect(yield* balancer.run({}, (key) => Effect.succeed(key.id))).toBe("a")
    }).pipe(
      Effect.provide(
        env(keys(["a", "b", "c"], { a: { account: "x" }, b: { account: "x" }, c: { account: "y" } }))
      )
    )
  )

  it.effect("waits up to the deadline for a cooling key, then fails with NoKeyAvailable and a hint", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      yield* balancer
        .run({}, (key) => (key.id === "a" ? Effect.fail(rateLimited(60)) : Effect.succeed(1)))
        .pipe(Effect.flip, Effect.fork)
      yield* TestClock.adjust("1 millis")
      const error = yield* balancer.run({}, () => Effect.succeed(1)).pipe(Effect.flip)
      expect(error._tag).toBe("NoKeyAvailable")
      if (error._tag !== "NoKeyAvailable") return
      expect(error.reason).toBe("cooldown")
      expect(error.retryAfter !== undefined && Duration.toSeconds(error.retryAfter)).toBeCloseTo(60, 0)
    }).pipe(Effect.provide(env(keys(["a"]), { deadline: "5 seconds" })))
  )

  it.effect(
    "when the only key that failed is cooling past the deadline: AllAttemptsFailed no-key, with why and when",
    () =>
      Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const fiber = yield* balancer
          .run({}, () => Effect.fail(rateLimited(60)))
          .pipe(Effect.flip, Effect.fork)
        // The backoff before reusing the key passes; the 60 s cooldown is beyond the 5 s deadline.
        yield* TestClock.adjust("3 seconds")
        const error = yield* Fiber.join(fiber)
        expect(error._tag).toBe("AllAttemptsFailed")
        if (error._tag !== "AllAttemptsFailed") return
        expect(error.reason).toBe("no-key")
        expect(error.attempts.map((a) => a.keyId)).toEqual(["a"])
        expect(error.noKey).toContain("cooling down")
        expect(error.message).toContain("no other key became eligible in time: every key is cooling down")
        expect(error.retryAfter !== undefined && Duration.toSeconds(error.retryAfter)).toBeCloseTo(60, 0)
      }).pipe(Effect.provide(env(keys(["a"]), { deadline: "5 seconds" })))
  )
})
