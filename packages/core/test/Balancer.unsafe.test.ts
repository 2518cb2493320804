import { describe, expect, it } from "@effect/vitest"
import { Balancer, KeyPool, KeySelector, Monitor, StateStore, UpstreamError } from "@or-balancer/core"
import { Cause, Duration, Effect, Exit, Layer, Schedule, TestClock } from "effect"
import { FirstCandidate, keys, Probe } from "./fixtures.js"

// `Balancer.unsafeStart`: a request's first attempt leased and settled synchronously, and the
// Effect loop going on from it (`started.run` / `started.runHeld`) when it fails.

/** First candidate in pool order, decided synchronously; `open` counts leases not yet reported. */
const syncSelector = (log: { open: number; reports: Array<[string, KeySelector.Outcome["_tag"]]> }) =>
  Layer.effect(
    KeySelector.KeySelector,
    Effect.gen(function* () {
      const pool = yield* KeyPool.KeyPool
      const clock = yield* Effect.clock
      const pick = (request: KeySelector.SelectRequest) => {
        const ks = pool.unsafeGet!()
        const c = KeySelector.candidates(request, ks)
        if (c.length === 0) return KeySelector.explain(request, ks, clock.unsafeCurrentTimeMillis())
        const key = c[0]!
        log.open++
        return KeySelector.lease(key, (outcome) => {
          log.open--
          log.reports.push([key.id, outcome._tag])
        })
      }
      return KeySelector.fromDecide(pick)
    })
  )

const newLog = () => ({ open: 0, reports: [] as Array<[string, KeySelector.Outcome["_tag"]]> })

const env = (log: ReturnType<typeof newLog>, ids: ReadonlyArray<string>, options?: Balancer.Options) =>
  Balancer.layer(options).pipe(
    Layer.provideMerge(syncSelector(log)),
    Layer.provideMerge(Layer.mergeAll(KeyPool.layer(keys(ids)), Monitor.layer, StateStore.layerMemory))
  )

const serverError = new UpstreamError.ServerError({ message: "502", status: 502 })
const rateLimited = (seconds: number) =>
  new UpstreamError.RateLimited({ message: "429", scope: "key", retryAfter: Duration.seconds(seconds) })

describe("Balancer: a key's first 401 closes it, whatever the stack", () => {
  const unauthorized = new UpstreamError.Unauthorized({ message: "This API key is disabled" })

  it.effect(
    "attempts started before the 401 may end; none starts after it, until the key comes back as a new Key",
    () =>
      Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const pool = yield* KeyPool.KeyPool
        // Three requests in flight on "a" (a bare first-candidate stack: no health tracking).
        const inFlight = [balancer.unsafeStart({})!, balancer.unsafeStart({})!, balancer.unsafeStart({})!]
        expect(inFlight.map((s) => s.key.id)).toEqual(["a", "a", "a"])
        inFlight[0]!.unsafeFail(unauthorized)
        // The other two were in flight at the 401: their answers still count.
        inFlight[1]!.unsafeFail(unauthorized)
        inFlight[2]!.unsafeSucceed()
        // No new attempt on "a": the synchronous path and the Effect path both go to "b".
        expect(balancer.unsafeStart({})!.key.id).toBe("b")
        expect(yield* balancer.run({}, (key) => Effect.succeed(key.id))).toBe("b")
        // A 401 met by the Effect loop closes its key too.
        const seen: Array<string> = []
        const failing = (key: { readonly id: string }) =>
          Effect.suspend(() => {
            seen.push(key.id)
            return key.id === "b" ? Effect.fail(unauthorized) : Effect.succeed(key.id)
          })
        expect(yield* balancer.run({}, failing)).toBe("c")
        expect(yield* balancer.run({}, failing)).toBe("c")
        expect(seen).toEqual(["b", "c", "c"])
        // A reload brings "a" back as a new Key: it is open again.
        yield* pool.set(keys(["a", "b", "c"]))
        expect(balancer.unsafeStart({})!.key.id).toBe("a")
      }).pipe(Effect.provide(env(newLog(), ["a", "b", "c"])))
  )

  it.effect("closeOnUnauthorized: false leaves a 401 to the strategies", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      balancer.unsafeStart({})!.unsafeFail(unauthorized)
      expect(balancer.unsafeStart({})!.key.id).toBe("a")
    }).pipe(Effect.provide(env(newLog(), ["a", "b"], { closeOnUnauthorized: false })))
  )
})

describe("Balancer.unsafeStart", () => {
  it.effect("leases synchronously; the first settler reports to the lease and the monitor, once", () => {
    const log = newLog()
    return Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const monitor = yield* Monitor.Monitor
      const started = balancer.unsafeStart({ model: "m" })!
      expect(started.key.id).toBe("a")
      expect(log.open).toBe(1)
      expect((yield* monitor.stats).inFlight).toBe(1)
      yield* TestClock.adjust("40 millis")
      // Detached, as a callback would hold them.
      const { unsafeCancel, unsafeSucceed } = started
      unsafeSucceed(0.25)
      unsafeCancel()
      started.unsafeFail(serverError)
      expect(log).toEqual({ open: 0, reports: [["a", "Success"]] })
      const stats = yield* monitor.stats
      expect(stats.inFlight).toBe(0)
      expect(stats.successes).toBe(1)
      expect(stats.failures).toBe(0)
      expect(stats.spend).toBe(0.25)
      expect(stats.keys.find((k) => k.id === "a")?.latencyMs.max).toBe(40)
    }).pipe(Effect.provide(env(log, ["a", "b"])))
  })

  it.effect("keys cooling down are passed over; with every key cooling it answers undefined", () => {
    const log = newLog()
    return Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      // A 429 with Retry-After on a, through the Effect loop: a cools down for 5 s.
      yield* balancer.run({}, (key) => (key.id === "a" ? Effect.fail(rateLimited(5)) : Effect.void))
      const first = balancer.unsafeStart({})!
      expect(first.key.id).toBe("b")
      first.unsafeFail(rateLimited(5))
      // unsafeFail reports, but cooling down is the loop's work: b is not cooling yet.
      yield* Effect.exit(first.run(() => Effect.fail(serverError)))
      expect(balancer.unsafeStart({})).toBeUndefined()
      expect(log.open).toBe(0)
      yield* TestClock.adjust("5 seconds")
      const again = balancer.unsafeStart({})
      expect(again?.key.id).toBe("a")
      again!.unsafeCancel()
    }).pipe(Effect.provide(env(log, ["a", "b"], { deadline: Duration.zero })))
  })

  it.effect(
    "a failed first attempt goes on in the loop: failover to the next key, the attempt listed",
    () => {
      const log = newLog()
      return Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const started = balancer.unsafeStart({ model: "m" })!
        started.unsafeFail(serverError)
        const used: Array<string> = []
        const held = yield* started.runHeld(
          (key, info) => {
            used.push(`${key.id}#${info.attempt}`)
            return Effect.succeed(key.id)
          },
          () => {}
        )
        expect(used).toEqual(["b#2"])
        expect(held.attempt).toBe(2)
        yield* held.succeed()
        expect(log.reports).toEqual([
          ["a", "Failure"],
          ["b", "Success"]
        ])
        const stats = yield* (yield* Monitor.Monitor).stats
        expect(stats.retries).toBe(1)
        expect(stats.inFlight).toBe(0)

        // Every key failing: AllAttemptsFailed lists the synchronous first attempt too.
        const second = balancer.unsafeStart({})!
        second.unsafeFail(serverError)
        const exit = yield* Effect.exit(second.run(() => Effect.fail(serverError)))
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
        expect(failure?._tag === "Some" && failure.value._tag).toBe("AllAttemptsFailed")
        const all = (failure as { value: Balancer.AllAttemptsFailed }).value
        expect(all.attempts[0]?.keyId).toBe(second.key.id)
        expect(all.attempts.length).toBe(4)
        expect(log.open).toBe(0)
      }).pipe(Effect.provide(env(log, ["a", "b"], { budget: false, backoff: Schedule.recurs(10) })))
    }
  )

  it.effect("a first attempt's non-retryable error ends the run with that error", () => {
    const log = newLog()
    return Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const started = balancer.unsafeStart({})!
      started.unsafeFail(new UpstreamError.BadRequest({ message: "bad", status: 400 }))
      let calls = 0
      const exit = yield* Effect.exit(
        started.run(() => {
          calls++
          return Effect.void
        })
      )
      expect(calls).toBe(0)
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
      expect(failure?._tag === "Some" && failure.value._tag).toBe("BadRequest")
    }).pipe(Effect.provide(env(log, ["a", "b"])))
  })

  it.effect("only a failed first attempt goes on: anything else is a defect", () => {
    const log = newLog()
    return Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const started = balancer.unsafeStart({})!
      started.unsafeSucceed()
      const exit = yield* Effect.exit(started.run(() => Effect.void))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      const held = yield* Effect.exit(
        started.runHeld(
          () => Effect.void,
          () => {}
        )
      )
      expect(Exit.isFailure(held) && Cause.isDie(held.cause)).toBe(true)
    }).pipe(Effect.provide(env(log, ["a"])))
  })

  it.effect(
    "off when a part has no synchronous form: a selector written as an Effect, a monitor without unsafe*",
    () =>
      Effect.gen(function* () {
        const noSyncSelector = Balancer.layer().pipe(
          Layer.provideMerge(FirstCandidate),
          Layer.provideMerge(
            Layer.mergeAll(KeyPool.layer(keys(["a"])), Monitor.layer, StateStore.layerMemory, Probe.Default)
          )
        )
        const a = yield* Effect.provide(Balancer.Balancer, noSyncSelector)
        expect(a.unsafeStart({})).toBeUndefined()

        const log = newLog()
        const plainMonitor = Layer.effect(
          Monitor.Monitor,
          Effect.map(Monitor.make, (m) => ({ ...m, unsafeStarted: undefined, unsafeFinished: undefined }))
        )
        const noSyncMonitor = Balancer.layer().pipe(
          Layer.provideMerge(syncSelector(log)),
          Layer.provideMerge(Layer.mergeAll(KeyPool.layer(keys(["a"])), plainMonitor, StateStore.layerMemory))
        )
        const b = yield* Effect.provide(Balancer.Balancer, noSyncMonitor)
        expect(b.unsafeStart({})).toBeUndefined()
        expect(log.open).toBe(0)
        // The Effect path still works over it.
        expect(yield* b.run({}, (key) => Effect.succeed(key.id))).toBe("a")
      })
  )

  it.effect("a key added to the pool at run time is seen by the synchronous path", () => {
    const log = newLog()
    return Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const pool = yield* KeyPool.KeyPool
      const pick = () => {
        const s = balancer.unsafeStart({})!
        s.unsafeCancel()
        return s.key.id
      }
      expect(pick()).toBe("a")
      yield* pool.remove("a")
      yield* pool.add(keys(["c"])[0]!)
      expect(pick()).toBe("b")
      yield* pool.remove("b")
      expect(pick()).toBe("c")
      expect(log.open).toBe(0)
    }).pipe(Effect.provide(env(log, ["a", "b"])))
  })
})

/** The first key its gate admits, in pool order: a stack that ignores `tried` (as a sticky one may). */
const gateOnly = Layer.effect(
  KeySelector.KeySelector,
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    return KeySelector.fromDecide((request) => {
      const key = pool.unsafeGet!().find((k) => request.gate?.(k) === undefined)
      return key === undefined
        ? new KeySelector.NoKeyAvailable({ reason: "ineligible", message: "none" })
        : KeySelector.lease(key, () => undefined)
    })
  })
)

describe("Balancer.unsafeStart with exclude (a hedge's second attempt)", () => {
  it.effect("never leases an excluded key, even from a stack that ignores `tried`", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const first = balancer.unsafeStart({})!
      expect(first.key.id).toBe("a")
      // The stack would pick "a" again: the exclusion is a gate, not a preference.
      const hedge = balancer.unsafeStart({ exclude: new Set(["a"]) })!
      expect(hedge.key.id).toBe("b")
      hedge.unsafeCancel()
      expect(balancer.unsafeStart({ exclude: new Set(["a", "b"]) })).toBeUndefined()
      first.unsafeSucceed()
    }).pipe(
      Effect.provide(
        Balancer.layer().pipe(
          Layer.provideMerge(gateOnly),
          Layer.provideMerge(
            Layer.mergeAll(KeyPool.layer(keys(["a", "b"])), Monitor.layer, StateStore.layerMemory)
          )
        )
      )
    )
  )
})
