import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeyPool, KeySelector, UpstreamError } from "@or-balancer/core"
import { HealthAware, RoundRobin } from "@or-balancer/strategies"
import { Clock, Duration, Effect, Fiber, Layer, TestClock } from "effect"
import { base, key, keys, pick, picks, request } from "./util.js"

const env = (ks: ReadonlyArray<ReturnType<typeof key>>, options: HealthAware.Options = {}) =>
  HealthAware.layer({
    baseCooldown: "1 second",
    maxCooldown: "3 seconds",
    panicThreshold: 1,
    ...options
  }).pipe(Layer.provideMerge(RoundRobin.layer()), Layer.provideMerge(base(ks)))

const server = new UpstreamError.ServerError({ message: "502", status: 502 })

/** One attempt on whatever key is chosen, ending with `error` (or success). */
const attempt = (error?: UpstreamError.UpstreamError, partial: Partial<KeySelector.SelectRequest> = {}) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    Effect.flatMap(s.select(request(partial)), (l) =>
      Effect.as(
        l.report(
          error === undefined ? KeySelector.success("1 second", 0) : KeySelector.failure("1 second", error)
        ),
        l.key.id
      )
    )
  )

const stateOf = (id: string) => Effect.map(HealthAware.status(), (s) => s.keys.find((k) => k.id === id)!)

describe("HealthAware", () => {
  it.effect("a Retry-After sets the cooldown, capped by maxCooldown; then the key is half-open again", () =>
    Effect.gen(function* () {
      const onA = {
        gate: (k: { id: string }) => (k.id === "a" ? undefined : { reason: "ineligible" as const })
      }
      yield* attempt(
        new UpstreamError.RateLimited({
          message: "429",
          scope: "key",
          retryAfter: Duration.seconds(999_999)
        }),
        onA
      )
      const out = yield* stateOf("a")
      expect(out.state).toBe("ejected")
      // maxCooldown is 3 seconds here, not 11 days.
      expect(out.until! - (yield* Clock.currentTimeMillis)).toBeLessThanOrEqual(3_000)
      yield* TestClock.adjust("3 seconds")
      expect((yield* stateOf("a")).state).toBe("half-open")
    }).pipe(Effect.provide(env(keys("a", "b"))))
  )

  it.effect("ejects after N consecutive counted failures; 400s and 403s do not count; a success resets", () =>
    Effect.gen(function* () {
      const onA = {
        gate: (k: { id: string }) => (k.id === "a" ? undefined : { reason: "ineligible" as const })
      }
      yield* attempt(server, onA)
      yield* attempt(new UpstreamError.BadRequest({ message: "400", status: 400 }), onA)
      yield* attempt(new UpstreamError.BadRequest({ message: "403 flagged by moderation", status: 403 }), onA)
      yield* attempt(server, onA)
      expect((yield* stateOf("a")).state).toBe("healthy")
      expect((yield* stateOf("a")).consecutiveFailures).toBe(2)
      yield* attempt(undefined, onA) // a success starts the count over
      expect((yield* stateOf("a")).consecutiveFailures).toBe(0)
      yield* attempt(server, onA)
      yield* attempt(server, onA)
      expect((yield* stateOf("a")).state).toBe("healthy")
      yield* attempt(server, onA)
      const a = yield* stateOf("a")
      expect(a.state).toBe("ejected")
      expect(a.reason).toBe("ServerError")
      expect(a.until).toBe(1_000)
      expect(yield* picks(3)).toEqual(["b", "b", "b"])
    }).pipe(Effect.provide(env(keys("a", "b"))))
  )

  it.effect("cooldown doubles up to the max; half-open lets one trial through; a good trial closes it", () =>
    Effect.gen(function* () {
      yield* attempt(new UpstreamError.Unauthorized({ message: "401" })) // ejects at once
      const out = yield* Effect.flip(pick())
      expect(out.reason).toBe("unhealthy")
      expect(out.retryAfter).toEqual(Duration.seconds(1))
      const cooldowns: Array<number> = []
      for (let i = 0; i < 3; i++) {
        const before = (yield* stateOf("a")).until!
        yield* TestClock.setTime(before)
        expect((yield* stateOf("a")).state).toBe("half-open")
        yield* attempt(server) // the trial fails: ejected again, for longer
        const now = before
        cooldowns.push((yield* stateOf("a")).until! - now)
      }
      expect(cooldowns).toEqual([2_000, 3_000, 3_000])
      yield* TestClock.setTime((yield* stateOf("a")).until!)
      // One trial at a time: while it is open, a second request finds no key.
      const selector = yield* KeySelector.KeySelector
      const trial = yield* selector.select(request())
      expect((yield* Effect.flip(selector.select(request()))).reason).toBe("unhealthy")
      // A trial with no verdict (interrupted) frees the slot; the key stays half-open.
      yield* trial.report(KeySelector.cancelled())
      expect((yield* stateOf("a")).state).toBe("half-open")
      const next = yield* selector.select(request())
      expect((yield* Effect.flip(selector.select(request()))).reason).toBe("unhealthy")
      yield* next.report(KeySelector.success("1 second", 0))
      const a = yield* stateOf("a")
      expect(a.state).toBe("healthy")
      expect(a.ejections).toBe(0)
    }).pipe(Effect.provide(env(keys("a"))))
  )

  it.effect("Retry-After sets the cooldown; an account-wide 429 cools every key of that account", () =>
    Effect.gen(function* () {
      yield* attempt(
        new UpstreamError.RateLimited({ message: "429", scope: "account", retryAfter: Duration.seconds(7) })
      )
      const status = yield* HealthAware.status()
      expect(status.keys.map((k) => [k.id, k.state, k.until])).toEqual([
        ["a", "ejected", 7_000],
        ["b", "ejected", 7_000],
        ["c", "healthy", undefined]
      ])
      expect(status.keys[1]!.reason).toBe("RateLimited (account acme)")
      expect(yield* picks(2)).toEqual(["c", "c"])
    }).pipe(
      Effect.provide(
        env([key("a", { account: "acme" }), key("b", { account: "acme" }), key("c", { account: "other" })], {
          panicThreshold: 0.7,
          // Above the Retry-After, so the header sets the cooldown (under it, the cap would).
          maxCooldown: "10 seconds"
        })
      )
    )
  )

  it.effect("panic: with more than the threshold out, traffic spreads over every key", () =>
    Effect.gen(function* () {
      const ejectNext = attempt(server)
      yield* ejectNext // a
      yield* ejectNext // b: 2 of 4 out, not more than half
      expect(yield* picks(4)).toEqual(["c", "d", "c", "d"])
      yield* ejectNext // c: 3 of 4 out -> panic
      expect((yield* HealthAware.status(0.5)).panic).toBe(true)
      expect(new Set(yield* picks(4))).toEqual(new Set(["a", "b", "c", "d"]))
    }).pipe(Effect.provide(env(keys("a", "b", "c", "d"), { panicThreshold: 0.5, failureThreshold: 1 })))
  )

  it.effect("panic does not bring back a key out for its own refusal (401, 402)", () =>
    Effect.gen(function* () {
      yield* attempt(new UpstreamError.Unauthorized({ message: "401" })) // a: revoked
      yield* attempt(new UpstreamError.InsufficientCredits({ message: "402" })) // b: out of credit
      yield* attempt(server) // c: 3 of 4 out -> panic
      expect((yield* HealthAware.status(0.5)).panic).toBe(true)
      // c's outage is ignored in panic; a and b would only refuse again.
      expect(new Set(yield* picks(6))).toEqual(new Set(["c", "d"]))
    }).pipe(Effect.provide(env(keys("a", "b", "c", "d"), { panicThreshold: 0.5, failureThreshold: 1 })))
  )

  it.effect("panic: a half-open key whose trial is taken is leased plainly (no endless re-claim)", () =>
    Effect.gen(function* () {
      const only = (id: string) => ({
        gate: (k: { id: string }) => (k.id === id ? undefined : { reason: "ineligible" as const })
      })
      yield* attempt(server, only("a")) // a out until 1 s
      yield* TestClock.adjust("500 millis")
      for (const id of ["b", "c", "d"]) yield* attempt(server, only(id)) // out until 1.5 s
      yield* TestClock.adjust("600 millis") // a half-open; 3 of 5 out: panic
      expect((yield* HealthAware.status(0.5)).panic).toBe(true)
      const selector = yield* KeySelector.KeySelector
      const trial = yield* selector.select(request(only("a"))) // claims a's trial slot, held
      const second = yield* selector.select(request(only("a")))
      expect([trial.key.id, second.key.id]).toEqual(["a", "a"])
      yield* second.report(KeySelector.success("1 second", 0))
      yield* trial.report(KeySelector.success("1 second", 0))
    }).pipe(Effect.provide(env(keys("a", "b", "c", "d", "e"), { panicThreshold: 0.5, failureThreshold: 1 })))
  )

  it.effect("probe recovery: a free CreditLookup call closes or re-ejects a cooled key", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({})
      yield* Effect.gen(function* () {
        yield* attempt(new UpstreamError.Unauthorized({ message: "401" }))
        yield* TestClock.adjust("1 second")
        expect((yield* Effect.flip(pick())).reason).toBe("unhealthy") // probe fails: a is unknown
        expect(yield* memory.lookups("a")).toBe(1)
        expect((yield* stateOf("a")).until).toBe(3_000)
        yield* memory.set("a", CreditLookup.keyInfo(5))
        yield* TestClock.adjust("2 seconds")
        expect(yield* pick()).toBe("a")
        expect((yield* stateOf("a")).state).toBe("healthy")
      }).pipe(
        Effect.provide(
          env(keys("a"), { recovery: "probe" }).pipe(
            Layer.provide(Layer.succeed(CreditLookup.CreditLookup, memory.service))
          )
        )
      )
    })
  )
})

describe("HealthAware trial slot", () => {
  // An inner selector that yields before it answers (as a permit wait or a credit lookup does).
  const yielding = Layer.effect(
    KeySelector.KeySelector,
    Effect.map(KeyPool.KeyPool, (pool) =>
      KeySelector.make((req) =>
        Effect.zipRight(
          Effect.yieldNow(),
          Effect.flatMap(pool.get, (ks) => {
            const k = ks.find((k) => KeySelector.isCandidate(req, k))
            return k === undefined
              ? Effect.fail(KeySelector.explain(req, ks, 0))
              : Effect.succeed(KeySelector.lease(k))
          })
        )
      )
    )
  )
  const env = HealthAware.layer({ baseCooldown: "1 second", panicThreshold: 1 }).pipe(
    Layer.provideMerge(yielding),
    Layer.provideMerge(base([key("a")]))
  )

  it.effect("selections that pass a half-open key's gate together get one trial between them", () =>
    Effect.gen(function* () {
      const selector = yield* KeySelector.KeySelector
      const first = yield* selector.select(request())
      yield* first.report(KeySelector.failure(0, new UpstreamError.Unauthorized({ message: "401" })))
      yield* TestClock.setTime(1_000) // a is half-open
      const fibers = yield* Effect.forEach([1, 2, 3], () =>
        Effect.fork(Effect.either(selector.select(request())))
      )
      const results = yield* Effect.forEach(fibers, Fiber.join)
      const trials = results.flatMap((r) => (r._tag === "Right" ? [r.right] : []))
      expect(trials.length).toBe(1)
      for (const r of results) if (r._tag === "Left") expect(r.left.reason).toBe("unhealthy")
      // The one trial ends without a verdict: the next selection is the next trial.
      yield* trials[0]!.report(KeySelector.cancelled())
      const next = yield* selector.select(request())
      expect(next.key.id).toBe("a")
      expect((yield* Effect.flip(selector.select(request()))).reason).toBe("unhealthy")
      yield* next.report(KeySelector.success(0, 0))
      const status = yield* HealthAware.status(1)
      expect(status.keys[0]!.state).toBe("healthy")
    }).pipe(Effect.provide(env))
  )
})
