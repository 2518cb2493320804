import { describe, expect, it } from "@effect/vitest"
import {
  Balancer,
  CreditLookup,
  KeyPool,
  KeySelector,
  Monitor,
  StateStore,
  UpstreamError
} from "@or-balancer/core"
import { ConcurrencyLimited, HealthAware, RoundRobin } from "@or-balancer/strategies"
import { Context, Duration, Effect, FastCheck as fc, Layer, TestClock } from "effect"
import * as Permits from "./permits.js"
import * as TwoPaths from "./twoPaths.js"
import { base, key, refuse, request, decideNow } from "./util.js"

// HealthAware.decide, over ConcurrencyLimited > RoundRobin: the same choice and the same
// state as `select`, synchronously; a `Wait` where `select` would probe or wait.

const options: HealthAware.Options = {
  failureThreshold: 2,
  baseCooldown: "1 second",
  maxCooldown: "4 seconds"
}

const pool = [
  key("a", { account: "acme", maxConcurrency: 1 }),
  key("b", { account: "acme" }),
  key("c", { maxConcurrency: 1 }),
  key("d")
]

const stack = (ks: ReadonlyArray<ReturnType<typeof key>> = pool, health: HealthAware.Options = options) =>
  HealthAware.layer(health).pipe(
    Layer.provideMerge(Permits.limited),
    Layer.provideMerge(RoundRobin.layer()),
    Layer.provideMerge(base(ks))
  )

type Ctx = Context.Context<KeyPool.KeyPool | StateStore.StateStore | Permits.Permits>

const stateOf = (ctx: Ctx) =>
  Effect.gen(function* () {
    const health = yield* Effect.provide(HealthAware.status(), ctx)
    // The stored records too: they show a claimed trial slot, which `status` does not.
    const records = yield* Context.get(ctx, StateStore.StateStore).entries("or-balancer/health")
    return { health, records: new Map(records), ...(yield* Permits.permitsOf(ctx)) }
  })

const errors: ReadonlyArray<UpstreamError.UpstreamError> = [
  new UpstreamError.ServerError({ message: "502", status: 502 }),
  new UpstreamError.Unauthorized({ message: "401" }),
  new UpstreamError.RateLimited({ message: "429", scope: "account", retryAfter: Duration.millis(1500) }),
  new UpstreamError.RateLimited({ message: "429", scope: "key" }),
  new UpstreamError.BadRequest({ message: "400", status: 400 }) // not the key's fault
]

const outcomeOf = (kind: number): KeySelector.Outcome =>
  kind === 0
    ? KeySelector.success("1 millis", 0.01)
    : kind === 1
      ? KeySelector.cancelled()
      : KeySelector.failure("1 millis", errors[kind - 2]!)

const op = fc.oneof(
  { arbitrary: TwoPaths.selectOp(["a", "b", "c", "d"]), weight: 3 },
  { arbitrary: TwoPaths.reportOp(fc.integer({ min: 0, max: errors.length + 1 }).map(outcomeOf)), weight: 3 },
  { arbitrary: TwoPaths.tickOp(2500), weight: 1 }
)

const server = errors[0]!
const unauthorized = errors[1]!

describe("HealthAware.decide", () => {
  it.effect.prop(
    "random selections, reports and time, through select and through decide: permits match the open leases; same picks, same health and permits",
    { ops: fc.array(op, { maxLength: 50 }) },
    ({ ops }) =>
      TwoPaths.check(
        () => stack(),
        stateOf,
        // No deadline and trial recovery: `select` neither waits nor probes.
        { undecided: "never" },
        ops,
        // Every permit in use is held by a lease not yet reported (health's wrapping gives each back).
        ({ inUse }, open) =>
          Permits.expectHeldByOpen(
            inUse,
            pool.map((k) => k.id),
            open
          )
      ),
    { fastCheck: { numRuns: 150 }, timeout: 120_000 }
  )

  it.effect("a half-open key's trial slot is claimed synchronously: one trial at a time", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(stack(pool.slice(0, 2)))
        const selector = Context.get(ctx, KeySelector.KeySelector)
        const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(selector, r)
        const onlyA = request({ gate: refuse("b") })
        const first = decideAtOnce(onlyA) as KeySelector.Lease
        expect(first.key.id).toBe("a")
        first.unsafeReport(KeySelector.failure("1 millis", unauthorized)) // ejects at once
        const out = decideAtOnce(onlyA)
        expect(out).toBeInstanceOf(KeySelector.NoKeyAvailable)
        expect(out).toEqual(yield* Effect.flip(selector.select(onlyA)))
        expect((decideAtOnce(request()) as KeySelector.Lease).key.id).toBe("b")

        yield* TestClock.adjust("1 second")
        const trial = decideAtOnce(onlyA) as KeySelector.Lease
        expect(trial.key.id).toBe("a")
        // The slot is taken: neither path lets a second request through.
        const busy = decideAtOnce(onlyA)
        expect((busy as KeySelector.NoKeyAvailable).reason).toBe("unhealthy")
        expect(busy).toEqual(yield* Effect.flip(selector.select(onlyA)))
        // No verdict frees the slot; the key stays half-open.
        trial.unsafeReport(KeySelector.cancelled())
        const again = decideAtOnce(onlyA) as KeySelector.Lease
        expect(again.key.id).toBe("a")
        // Reported through its Effect form, the same report: a success closes the key.
        yield* again.report(KeySelector.success("1 millis"))
        const health = yield* Effect.provide(HealthAware.status(), ctx)
        expect(health.keys.find((k) => k.id === "a")).toMatchObject({ state: "healthy", ejections: 0 })
      })
    )
  )

  it.effect("probe recovery: a Wait whenever a probe is due (nothing changed), decided otherwise", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({})
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(
            stack(pool.slice(0, 2), { ...options, recovery: "probe" }).pipe(
              Layer.provide(Layer.succeed(CreditLookup.CreditLookup, memory.service))
            )
          )
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(selector, r)
          const first = decideAtOnce(request({ gate: refuse("b") })) as KeySelector.Lease
          first.unsafeReport(KeySelector.failure("1 millis", unauthorized))
          // a is out, no probe due yet: decided synchronously.
          const b = decideAtOnce(request()) as KeySelector.Lease
          expect(b.key.id).toBe("b")
          b.unsafeReport(KeySelector.success("1 millis"))

          yield* TestClock.adjust("1 second")
          const before = yield* stateOf(ctx)
          expect(decideAtOnce(request())).toBeUndefined()
          expect(decideAtOnce(request({ gate: refuse("a") }))).toBeUndefined()
          expect(yield* stateOf(ctx)).toEqual(before)
          expect(yield* memory.lookups("a")).toBe(0)

          // `select` runs the probe (a is unknown to the lookup: ejected again), then picks.
          const picked = yield* selector.select(request())
          expect(picked.key.id).toBe("b")
          expect(yield* memory.lookups("a")).toBe(1)
          yield* picked.report(KeySelector.success("1 millis"))
          const after = decideAtOnce(request()) as KeySelector.Lease
          expect(after.key.id).toBe("b")
          after.unsafeReport(KeySelector.cancelled())
        })
      )
    })
  )

  it.effect(
    "a Wait when the inner selector is written as an Effect, or the store has no synchronous forms",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const plainInner = Layer.effect(
            KeySelector.KeySelector,
            Effect.map(RoundRobin.make(), (rr) => KeySelector.make(rr.select))
          )
          const noSyncInner = yield* Layer.build(
            HealthAware.layer(options).pipe(Layer.provideMerge(plainInner), Layer.provideMerge(base(pool)))
          )
          expect(Context.get(noSyncInner, KeySelector.KeySelector).decide(request())).toBeInstanceOf(
            KeySelector.Wait
          )

          // The round robin keeps the memory store's fast path; health sees a store without one.
          const asyncStore = Layer.effect(
            StateStore.StateStore,
            Effect.map(StateStore.StateStore, (s) => StateStore.StateStore.of({ ...s, unsafe: undefined }))
          )
          const noSyncStore = yield* Layer.build(
            HealthAware.layer(options).pipe(
              Layer.provide(asyncStore),
              Layer.provideMerge(RoundRobin.layer()),
              Layer.provideMerge(base(pool))
            )
          )
          const selector = Context.get(noSyncStore, KeySelector.KeySelector)
          expect(selector.decide(request())).toBeInstanceOf(KeySelector.Wait)
          // The Effect path still learns and gates there.
          const lease = yield* selector.select(request({ gate: refuse("b", "c", "d") }))
          yield* lease.report(KeySelector.failure("1 millis", unauthorized))
          expect((yield* Effect.flip(selector.select(request({ gate: refuse("b", "c", "d") })))).reason).toBe(
            "unhealthy"
          )
        })
      )
  )

  it.effect(
    "through Balancer.unsafeStart: HealthAware > ConcurrencyLimited > RoundRobin leases and learns",
    () =>
      Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const monitor = yield* Monitor.Monitor
        const s1 = balancer.unsafeStart({})!
        const s2 = balancer.unsafeStart({})!
        expect([s1.key.id, s2.key.id]).toEqual(["a", "b"])
        // Every permit held: ConcurrencyLimited would wait, so the fast path does not decide.
        expect(balancer.unsafeStart({})).toBeUndefined()
        expect((yield* monitor.stats).inFlight).toBe(2)

        s1.unsafeFail(server) // one failure ejects a here; its permit comes back
        const health = yield* HealthAware.status()
        expect(health.keys.find((k) => k.id === "a")).toMatchObject({
          state: "ejected",
          reason: "ServerError"
        })
        // a is out and b full: still a wait.
        expect(balancer.unsafeStart({})).toBeUndefined()
        s2.unsafeSucceed(0.5)
        const s3 = balancer.unsafeStart({})!
        expect(s3.key.id).toBe("b")

        yield* TestClock.adjust("1 second")
        const trial = balancer.unsafeStart({})!
        expect(trial.key.id).toBe("a")
        // a's trial is open and b is full.
        expect(balancer.unsafeStart({})).toBeUndefined()
        trial.unsafeSucceed()
        s3.unsafeCancel()
        expect((yield* HealthAware.status()).keys.map((k) => k.state)).toEqual(["healthy", "healthy"])
        const stats = yield* monitor.stats
        expect(stats).toMatchObject({ inFlight: 0, successes: 2, failures: 1, spend: 0.5 })
        // Every permit is back: both keys lease again.
        const again = [balancer.unsafeStart({})!, balancer.unsafeStart({})!]
        expect(again.map((s) => s.key.id).sort()).toEqual(["a", "b"])
        again.forEach((s) => s.unsafeCancel())
      }).pipe(
        Effect.provide(
          Balancer.layer({ deadline: "10 seconds" }).pipe(
            Layer.provideMerge(HealthAware.layer({ failureThreshold: 1, baseCooldown: "1 second" })),
            Layer.provideMerge(ConcurrencyLimited.layer()),
            Layer.provideMerge(RoundRobin.layer()),
            Layer.provideMerge(
              Layer.mergeAll(
                KeyPool.layer([key("a", { maxConcurrency: 1 }), key("b", { maxConcurrency: 1 })]),
                Monitor.layer,
                StateStore.layerMemory
              )
            )
          )
        )
      )
  )
})
