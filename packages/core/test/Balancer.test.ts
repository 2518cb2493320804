// Balancer: a lease's lifetime (interruption, runScoped), keys added at run time, and batch.
import { describe, expect, it } from "@effect/vitest"
import { Balancer, KeyPool, Monitor, UpstreamError } from "@or-balancer/core"
import { Deferred, Effect, Either, Fiber, Ref, TestClock } from "effect"
import { env, keys, Probe, serverError } from "./fixtures.js"

describe("Balancer", () => {
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
