import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeyPool, KeySelector, UpstreamError } from "@or-balancer/core"
import { CreditAware, CreditLedger } from "@or-balancer/strategies"
import { Deferred, Duration, Effect, FastCheck as fc, Fiber, Layer, TestClock } from "effect"
import { base, key, keys, pick, picks as pickMany, refuse, request } from "./util.js"

const setup = (infos: Record<string, CreditLookup.KeyInfo>, ids: ReadonlyArray<string>, estimate = 0.1) =>
  Effect.gen(function* () {
    const memory = yield* CreditLookup.makeMemory(infos)
    const layer = CreditAware.layer({ estimate }).pipe(
      Layer.provideMerge(CreditLedger.layer({ ttl: "60 seconds", failureTtl: "5 seconds" })),
      Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
      Layer.provideMerge(base(keys(...ids)))
    )
    return { memory, layer }
  })

describe("CreditAware", () => {
  it.effect("prefers the key with the most credit; unlimited beats any balance", () =>
    Effect.gen(function* () {
      const { layer } = yield* setup(
        { a: CreditLookup.keyInfo(2), b: CreditLookup.keyInfo(5), c: CreditLookup.keyInfo(null) },
        ["a", "b", "c"]
      )
      yield* Effect.gen(function* () {
        expect(yield* pick()).toBe("c")
        expect(yield* pick({ tried: new Set(["c"]) })).toBe("b")
        expect(yield* pick({ gate: refuse("c", "b") })).toBe("a")
      }).pipe(Effect.provide(layer))
    })
  )

  it.effect.prop(
    "chooses the first key with the most credit among those admitted and with enough for the estimate",
    {
      credits: fc.array(fc.option(fc.integer({ min: 0, max: 6 }), { nil: null }), {
        minLength: 1,
        maxLength: 8
      }),
      refused: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 })
    },
    ({ credits, refused }) =>
      Effect.gen(function* () {
        const ids = credits.map((_, i) => `k${i}`)
        const infos = Object.fromEntries(ids.map((id, i) => [id, CreditLookup.keyInfo(credits[i]!)]))
        const { layer } = yield* setup(infos, ids, 1)
        let expected: string | undefined
        let most = -Infinity
        ids.forEach((id, i) => {
          const c = credits[i] === null ? Infinity : credits[i]!
          if (!refused[i] && c >= 1 && c > most) {
            expected = id
            most = c
          }
        })
        const gate = refuse(...ids.filter((_, i) => refused[i]))
        const chosen = yield* pick({ gate }).pipe(
          Effect.map((id): string | undefined => id),
          Effect.catchTag("NoKeyAvailable", () => Effect.succeed(undefined)),
          Effect.provide(layer)
        )
        expect(chosen).toBe(expected)
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("100 concurrent selections cause one lookup per key", () =>
    Effect.gen(function* () {
      const { layer, memory } = yield* setup(
        { a: CreditLookup.keyInfo(50), b: CreditLookup.keyInfo(40) },
        ["a", "b"],
        0
      )
      yield* Effect.forEach(Array.from({ length: 100 }), () => pick(), { concurrency: "unbounded" }).pipe(
        Effect.provide(layer)
      )
      expect(yield* memory.lookups("a")).toBe(1)
      expect(yield* memory.lookups("b")).toBe(1)
    })
  )

  it.effect("a key whose lookup failed says when it is retried, so a request can wait for it", () =>
    Effect.gen(function* () {
      const { layer, memory } = yield* setup({}, ["a"])
      yield* Effect.gen(function* () {
        const error = yield* Effect.flip(pick())
        expect(error.reason).toBe("credit")
        // The failed lookup is retried after the 5 s failure TTL: that is the hint.
        expect(error.retryAfter !== undefined && Duration.toSeconds(error.retryAfter)).toBe(5)
        yield* memory.set("a", CreditLookup.keyInfo(3))
        // (At exactly 5 s the failure still counts; the balancer then waits its minimum 1 ms.)
        yield* TestClock.adjust("5001 millis")
        expect(yield* pick()).toBe("a")
      }).pipe(Effect.provide(layer))
    })
  )

  it.effect("a failed lookup is retried after the short TTL, a good one only after the long TTL", () =>
    Effect.gen(function* () {
      const { layer, memory } = yield* setup({ a: CreditLookup.keyInfo(5) }, ["a", "b"])
      yield* Effect.gen(function* () {
        expect(yield* pick()).toBe("a") // b is unknown to the lookup: Unauthorized
        yield* memory.set("b", CreditLookup.keyInfo(9))
        expect(yield* pick()).toBe("a") // still the cached failure
        yield* TestClock.adjust("6 seconds")
        expect(yield* pick()).toBe("b")
        expect(yield* memory.lookups("b")).toBe(2)
        expect(yield* memory.lookups("a")).toBe(1)
        yield* TestClock.adjust("55 seconds")
        yield* pick()
        expect(yield* memory.lookups("a")).toBe(2)
      }).pipe(Effect.provide(layer))
    })
  )

  it.effect("no overshoot: cap 1.00, 50 concurrent requests of 0.10, at most 10 run on the key", () =>
    Effect.gen(function* () {
      const { layer } = yield* setup({ a: CreditLookup.keyInfo(1) }, ["a"], 0.1)
      yield* Effect.gen(function* () {
        const selector = yield* KeySelector.KeySelector
        const go = yield* Deferred.make<void>()
        const one = KeySelector.use(
          selector,
          request(),
          () => Effect.as(Deferred.await(go), true),
          () => KeySelector.success("1 second", 0.1)
        ).pipe(Effect.catchTag("NoKeyAvailable", (e) => Effect.succeed(e.reason)))
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 50 }), () => one, { concurrency: "unbounded" })
        )
        yield* Effect.yieldNow()
        yield* Deferred.succeed(go, undefined)
        const results = yield* Fiber.join(fiber)
        expect(results.filter((r) => r === true).length).toBe(10)
        expect(results.filter((r) => r === "credit").length).toBe(40)
        const [entry] = yield* Effect.flatMap(CreditLedger.CreditLedger, (l) => l.snapshot)
        expect(entry!.reserved).toBeCloseTo(0)
        expect(entry!.available).toBeCloseTo(0)
        const after = yield* Effect.flip(pick())
        expect(after.reason).toBe("credit")
        expect(after.retryAfter).toBeDefined()
      }).pipe(Effect.provide(layer))
    })
  )

  it.effect(
    "a 402 empties the key until its next lookup; a reservation is released when the attempt ends",
    () =>
      Effect.gen(function* () {
        const { layer } = yield* setup({ a: CreditLookup.keyInfo(3), b: CreditLookup.keyInfo(1) }, ["a", "b"])
        yield* Effect.gen(function* () {
          const selector = yield* KeySelector.KeySelector
          const lease = yield* selector.select(request())
          yield* lease.report(
            KeySelector.failure("1 second", new UpstreamError.InsufficientCredits({ message: "402" }))
          )
          expect(yield* pick()).toBe("b")
          const snapshot = yield* Effect.flatMap(CreditLedger.CreditLedger, (l) => l.snapshot)
          expect(snapshot.find((e) => e.id === "a")!.available).toBe(0)
          expect(snapshot.every((e) => e.reserved === 0)).toBe(true)
        }).pipe(Effect.provide(layer))
      })
  )

  it.effect("refresh makes the next selection ask again while the lookup is still fresh", () =>
    Effect.gen(function* () {
      const { layer, memory } = yield* setup({ a: CreditLookup.keyInfo(5), b: CreditLookup.keyInfo(1) }, [
        "a",
        "b"
      ])
      yield* Effect.gen(function* () {
        const ledger = yield* CreditLedger.CreditLedger
        const pool = yield* KeyPool.KeyPool
        expect(yield* pickMany(3)).toEqual(["a", "a", "a"])
        expect(yield* memory.lookups("a")).toBe(1)
        yield* memory.set("a", CreditLookup.keyInfo(0.5))
        const a = (yield* pool.get).find((k) => k.id === "a")!
        yield* ledger.refresh(a)
        expect(yield* pick()).toBe("b") // a's new balance is under b's
        expect(yield* memory.lookups("a")).toBe(2)
        expect(yield* memory.lookups("b")).toBe(1)
      }).pipe(Effect.provide(layer))
    })
  )

  it.effect("a key added to the pool is looked up by the next selection; a refused key is not", () =>
    Effect.gen(function* () {
      const { layer, memory } = yield* setup(
        { a: CreditLookup.keyInfo(1), b: CreditLookup.keyInfo(2), c: CreditLookup.keyInfo(9) },
        ["a", "b"]
      )
      yield* Effect.gen(function* () {
        const pool = yield* KeyPool.KeyPool
        expect(yield* pick({ gate: refuse("b") })).toBe("a")
        expect(yield* memory.lookups("b")).toBe(0)
        expect(yield* pickMany(2)).toEqual(["b", "b"])
        yield* pool.add(key("c"))
        expect(yield* pick()).toBe("c")
        expect(yield* memory.lookups("c")).toBe(1)
        expect(yield* memory.lookups("a")).toBe(1)
      }).pipe(Effect.provide(layer))
    })
  )
})
