// Balancer: which failures are retried, the retry budget, and the AllAttemptsFailed a request ends with.
import { describe, expect, it } from "@effect/vitest"
import { Balancer, UpstreamError } from "@or-balancer/core"
import { Effect, Either, Fiber, GlobalValue, TestClock } from "effect"
import { env, keys, rateLimited, serverError } from "./fixtures.js"

describe("Balancer", () => {
  it.effect("a 400 is not retried", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      let calls = 0
      const error = yield* balancer
        .run({}, () =>
          Effect.suspend(() => {
            calls++
            return Effect.fail(new UpstreamError.BadRequest({ message: "bad", status: 400 }))
          })
        )
        .pipe(Effect.flip)
      expect(error._tag).toBe("BadRequest")
      expect(calls).toBe(1)
    }).pipe(Effect.provide(env(keys(["a", "b"]))))
  )

  it.effect("every key failing gives AllAttemptsFailed listing every attempt", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const fiber = yield* balancer.run({}, () => Effect.fail(serverError)).pipe(Effect.flip, Effect.fork)
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("AllAttemptsFailed")
      if (error._tag !== "AllAttemptsFailed") return
      expect(error.reason).toBe("attempts")
      // Three keys, four attempts: each key once, then one reused.
      expect(error.attempts.map((a) => a.keyId)).toEqual(["a", "b", "c", "a"])
      expect(error.attempts.every((a) => a.error._tag === "ServerError")).toBe(true)
      expect(error.message).toContain("all 4 attempts failed")
    }).pipe(Effect.provide(env(keys(["a", "b", "c"]))))
  )

  it.effect("a failed request compiles no Schema parser (no memo entry per AllAttemptsFailed)", () =>
    Effect.gen(function* () {
      // Schema's parser memo is a WeakMap whose table never shrinks: a validated AllAttemptsFailed
      // added ~13 entries per failed request (issue 14: 1 MB retained after Overload's load).
      const balancer = yield* Balancer.Balancer
      // The memo Schema's parsers share (the same global value ParseResult uses).
      const memo = GlobalValue.globalValue(
        Symbol.for("effect/ParseResult/decodeMemoMap"),
        () => new WeakMap()
      )
      const set = WeakMap.prototype.set
      let sets = 0
      WeakMap.prototype.set = function (this: WeakMap<object, unknown>, k: object, v: unknown) {
        if (this === memo) sets++
        return set.call(this, k, v)
      }
      const failed = yield* Effect.forEach(
        Array.from({ length: 50 }),
        () => balancer.run({}, () => Effect.fail(serverError)).pipe(Effect.flip, Effect.fork),
        { concurrency: "unbounded" }
      ).pipe(
        Effect.zipLeft(TestClock.adjust("1 minute")),
        Effect.flatMap(Fiber.joinAll),
        Effect.ensuring(Effect.sync(() => (WeakMap.prototype.set = set)))
      )
      expect(failed.every((e) => e._tag === "AllAttemptsFailed")).toBe(true)
      expect(sets).toBe(0)
    }).pipe(Effect.provide(env(keys(["a", "b", "c"]))))
  )

  it.effect("a dead key (401) is never reused within a request", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const calls: Array<string> = []
      const fiber = yield* balancer
        .run({}, (key) =>
          Effect.suspend((): Effect.Effect<never, UpstreamError.UpstreamError> => {
            calls.push(key.id)
            return key.id === "a"
              ? Effect.fail(new UpstreamError.Unauthorized({ message: "no" }))
              : Effect.fail(serverError)
          })
        )
        .pipe(Effect.flip, Effect.fork)
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      expect(calls).toEqual(["a", "b", "b", "b"])
    }).pipe(Effect.provide(env(keys(["a", "b"]))))
  )

  it.effect("the retry budget caps retries under a storm of failures", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      let calls = 0
      const results = yield* balancer
        .batch(
          Array.from({ length: 100 }, (_, i) => i),
          () =>
            balancer.run({}, () =>
              Effect.suspend(() => {
                calls++
                return Effect.fail(serverError)
              })
            ),
          { concurrency: 100 }
        )
        .pipe(
          Effect.fork,
          Effect.tap(() => TestClock.adjust("1 minute")),
          Effect.flatMap(Fiber.join)
        )
      expect(results.every(Either.isLeft)).toBe(true)
      // 100 first attempts; retries at most 20% of 100 + a floor of 1/s over a 10 s window = 30.
      expect(calls).toBeLessThanOrEqual(130)
      expect(calls).toBeGreaterThanOrEqual(100)
      const budgetStops = results.filter(
        (r) => Either.isLeft(r) && r.left._tag === "AllAttemptsFailed" && r.left.reason === "budget"
      )
      expect(budgetStops.length).toBeGreaterThan(50)
    }).pipe(
      Effect.provide(
        env(keys(["a", "b", "c"]), {
          budget: { ratio: 0.2, minPerSecond: 1, window: "10 seconds" },
          maxAttempts: 4
        })
      )
    )
  )

  it.effect("a 429 with a known reset is a wait: it spends no attempt and no retry budget", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const calls: Array<string> = []
      // The account's window refuses three times, each with its reset 1 s ahead; then it admits.
      const fiber = yield* balancer
        .run({}, (key) =>
          Effect.suspend(() => {
            calls.push(key.id)
            return calls.length <= 3 ? Effect.fail(rateLimited(1, "account")) : Effect.succeed(key.id)
          })
        )
        .pipe(Effect.fork)
      yield* TestClock.adjust("3 seconds")
      // maxAttempts 2 and no retry budget to spend: both would have ended it after the first 429.
      expect(yield* Fiber.join(fiber)).toBe("a")
      expect(calls).toEqual(["a", "a", "a", "a"])
      // A 5xx still spends an attempt and the budget: with none left, the next one ends the request.
      const e = yield* balancer.run({}, () => Effect.fail(serverError)).pipe(Effect.flip)
      expect(e._tag === "AllAttemptsFailed" && e.reason).toBe("budget")
    }).pipe(
      Effect.provide(
        env(keys(["a"]), { budget: { ratio: 0, minPerSecond: 0, window: "10 seconds" }, maxAttempts: 2 })
      )
    )
  )

  it.effect("failing over from a dead key (401, 402) spends no retry budget; a 5xx still does", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const dead = (key: string) =>
        key === "a"
          ? new UpstreamError.Unauthorized({ message: "This API key is disabled" })
          : new UpstreamError.InsufficientCredits({ message: "Key limit exceeded", scope: "key" })
      // No retry budget at all: a and b cannot serve, c can; the failovers from a and b still go on.
      const calls: Array<string> = []
      const result = yield* balancer.run({}, (key) =>
        Effect.suspend(() => {
          calls.push(key.id)
          return key.id === "c" ? Effect.succeed("c") : Effect.fail(dead(key.id))
        })
      )
      expect(result).toBe("c")
      expect(calls).toEqual(["a", "b", "c"])
      // A 5xx still spends the budget: with none, the request ends after its first attempt.
      const e = yield* balancer.run({}, () => Effect.fail(serverError)).pipe(Effect.flip)
      expect(e._tag === "AllAttemptsFailed" && e.reason).toBe("budget")
    }).pipe(
      Effect.provide(
        env(keys(["a", "b", "c"]), {
          budget: { ratio: 0, minPerSecond: 0, window: "10 seconds" },
          maxAttempts: 4,
          closeOnUnauthorized: false
        })
      )
    )
  )
})
