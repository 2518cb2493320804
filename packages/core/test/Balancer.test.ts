import { describe, expect, it } from "@effect/vitest"
import { Balancer, KeyPool, Monitor, UpstreamError } from "@or-balancer/core"
import { Clock, Deferred, Duration, Effect, Either, Fiber, GlobalValue, Ref, TestClock } from "effect"
import { env, keys, Probe } from "./fixtures.js"

const rateLimited = (seconds: number, scope: "key" | "account" = "key") =>
  new UpstreamError.RateLimited({ message: "slow down", scope, retryAfter: Duration.seconds(seconds) })
const serverError = new UpstreamError.ServerError({ message: "boom", status: 500 })

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

  it.effect("a lease is released even when the call is interrupted", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const probe = yield* Probe
      const started = yield* Deferred.make<void>()
      const fiber = yield* balancer
        .run({}, () => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never))
        .pipe(Effect.fork)
      yield* Deferred.await(started)
      expect(yield* Ref.get(probe.open)).toBe(1)
      const inFlight = (yield* (yield* Monitor.Monitor).stats).inFlight
      expect(inFlight).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(probe.open)).toBe(0)
      expect((yield* Ref.get(probe.reports)).map((r) => r.outcome._tag)).toEqual(["Cancelled"])
      expect((yield* (yield* Monitor.Monitor).stats).inFlight).toBe(0)
    }).pipe(Effect.provide(env(keys(["a"]))))
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

  it.effect("runScoped keeps the lease until the scope closes and reports once", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const probe = yield* Probe
      yield* Effect.scoped(
        Effect.gen(function* () {
          const scoped = yield* balancer.runScoped({}, (key) =>
            key.id === "a" ? Effect.fail(serverError) : Effect.succeed("stream")
          )
          expect(scoped.value).toBe("stream")
          expect(scoped.key.id).toBe("b")
          expect(yield* Ref.get(probe.open)).toBe(1)
          yield* TestClock.adjust("50 millis")
          yield* scoped.succeed(0.25)
          yield* scoped.succeed(1)
        })
      )
      expect(yield* Ref.get(probe.open)).toBe(0)
      const reports = yield* Ref.get(probe.reports)
      expect(reports.map((r) => r.key)).toEqual(["a", "b"])
      const b = reports[1]!.outcome
      expect(b._tag === "Success" && b.cost).toBe(0.25)
    }).pipe(Effect.provide(env(keys(["a", "b"]), { backoff: undefined, maxAttempts: 3 })))
  )

  it.effect("keys added at run time are used without disturbing a request in flight", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const pool = yield* KeyPool.KeyPool
      const gate = yield* Deferred.make<void>()
      const inFlight = yield* balancer
        .run({}, (key) => Effect.as(Deferred.await(gate), key.id))
        .pipe(Effect.fork)
      yield* Effect.yieldNow()
      yield* pool.remove("a")
      yield* pool.add(keys(["z"])[0]!)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(inFlight)).toBe("a")
      expect(yield* balancer.run({}, (key) => Effect.succeed(key.id))).toBe("z")
    }).pipe(Effect.provide(env(keys(["a"]))))
  )

  it.effect("batch gives one Either per input, in order, with bounded concurrency", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      let running = 0
      let peak = 0
      const results = yield* balancer
        .batch(
          Array.from({ length: 20 }, (_, i) => i),
          (i) =>
            balancer.run({}, () =>
              Effect.gen(function* () {
                running++
                peak = Math.max(peak, running)
                yield* Effect.sleep("10 millis")
                running--
                return i % 5 === 0
                  ? yield* Effect.fail(new UpstreamError.BadRequest({ message: "no", status: 400 }))
                  : i
              })
            ),
          { concurrency: 4 }
        )
        .pipe(
          Effect.fork,
          Effect.tap(() => TestClock.adjust("1 second")),
          Effect.flatMap(Fiber.join)
        )
      expect(results.length).toBe(20)
      expect(peak).toBe(4)
      results.forEach((r, i) => {
        if (i % 5 === 0) expect(Either.isLeft(r) && r.left._tag).toBe("BadRequest")
        else expect(r).toEqual(Either.right(i))
      })
    }).pipe(Effect.provide(env(keys(["a", "b"]))))
  )
})
