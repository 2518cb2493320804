import { describe, expect, it } from "@effect/vitest"
import { KeySelector } from "@or-balancer/core"
import { ConcurrencyLimited, RoundRobin } from "@or-balancer/strategies"
import { Context, Deferred, Effect, Exit, FastCheck as fc, Fiber, Layer, Scope, TestClock } from "effect"
import { base, key } from "./util.js"

const env = (ks: ReadonlyArray<ReturnType<typeof key>>) =>
  Layer.effectContext(
    Effect.map(ConcurrencyLimited.makeWithStatus({ defaultMax: 2 }), (m) => {
      statusRef.current = m.status
      return Context.make(KeySelector.KeySelector, m.selector)
    })
  ).pipe(Layer.provideMerge(RoundRobin.layer()), Layer.provideMerge(base(ks)))

const statusRef: { current: Effect.Effect<ConcurrencyLimited.Status> } = { current: Effect.die("no status") }

const hold = (scope: Scope.Scope, deadline = 10_000) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    Effect.map(
      Scope.extend(KeySelector.scoped(s, { attempt: 1, tried: new Set(), deadline }), scope),
      (l) => l.key.id
    )
  )

describe("ConcurrencyLimited", () => {
  it.effect("takes a free permit at once, then hands freed permits over in arrival order", () =>
    Effect.gen(function* () {
      const s1 = yield* Scope.make()
      expect(yield* hold(s1)).toBe("a")
      const order: Array<string> = []
      const waiter = (name: string) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          yield* hold(scope)
          order.push(name)
          return scope
        })
      const w2 = yield* Effect.fork(waiter("second"))
      yield* Effect.yieldNow()
      const w3 = yield* Effect.fork(waiter("third"))
      yield* Effect.yieldNow()
      expect((yield* statusRef.current).waiting).toBe(2)
      yield* Scope.close(s1, Exit.void)
      const s2 = yield* Fiber.join(w2)
      expect(order).toEqual(["second"])
      yield* Scope.close(s2, Exit.void)
      const s3 = yield* Fiber.join(w3)
      expect(order).toEqual(["second", "third"])
      yield* Scope.close(s3, Exit.void)
      expect((yield* statusRef.current).inUse.size).toBe(0)
    }).pipe(Effect.provide(env([key("a", { maxConcurrency: 1 })])))
  )

  it.effect("no permit leaks when a waiter or a holder is interrupted; the deadline ends a wait", () =>
    Effect.gen(function* () {
      const held = yield* Effect.fork(
        Effect.scoped(Effect.flatMap(Effect.scope, (s) => Effect.zipRight(hold(s), Effect.never)))
      )
      yield* Effect.yieldNow()
      const waiting = yield* Effect.fork(Effect.scoped(Effect.flatMap(Effect.scope, (s) => hold(s))))
      yield* Effect.yieldNow()
      expect((yield* statusRef.current).waiting).toBe(1)
      yield* Fiber.interrupt(waiting)
      expect((yield* statusRef.current).waiting).toBe(0)
      yield* Fiber.interrupt(held)
      expect((yield* statusRef.current).inUse.size).toBe(0)
      // Free again: taken at once. Then a second caller times out at its deadline.
      const s = yield* Scope.make()
      expect(yield* hold(s)).toBe("a")
      const late = yield* Effect.fork(Effect.scoped(Effect.flatMap(Effect.scope, (sc) => hold(sc, 1_000))))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(late).pipe(Effect.flip)
      expect(error.reason).toBe("concurrency")
      expect((yield* statusRef.current).waiting).toBe(0)
    }).pipe(Effect.provide(env([key("a", { maxConcurrency: 1 })])))
  )

  it.effect("a waiter interrupted as a permit is handed to it gives the permit on, never leaks it", () =>
    Effect.gen(function* () {
      const s1 = yield* Scope.make()
      expect(yield* hold(s1)).toBe("a")
      const scoped = Effect.scoped(
        Effect.flatMap(Effect.scope, (s) => Effect.zipRight(hold(s), Effect.never))
      )
      const first = yield* Effect.fork(scoped)
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(
        Effect.scoped(Effect.flatMap(Effect.scope, (s) => hold(s))).pipe(Effect.as("served"))
      )
      yield* Effect.yieldNow()
      expect((yield* statusRef.current).waiting).toBe(2)
      // The interrupt is sent but not yet seen by `first` when the permit is handed to it.
      yield* Fiber.interruptFork(first)
      yield* Scope.close(s1, Exit.void)
      const exit = yield* Fiber.await(first)
      expect(Exit.isInterrupted(exit)).toBe(true)
      // The permit went on to the next waiter in line (a leak would leave it waiting), then came back.
      const served = yield* Effect.fork(Effect.timeout(Fiber.join(second), "1 second"))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(served)).toBe("served")
      const status = yield* statusRef.current
      expect(status.waiting).toBe(0)
      expect(status.inUse.size).toBe(0)
      const s2 = yield* Scope.make()
      expect(yield* hold(s2)).toBe("a")
      yield* Scope.close(s2, Exit.void)
    }).pipe(Effect.provide(env([key("a", { maxConcurrency: 1 })])))
  )

  it.effect.prop(
    "interruptions racing hand-overs: no permit leaks, the cap holds, and every survivor is served in order",
    {
      ops: fc.array(
        fc.record({
          wait: fc.boolean(),
          hold: fc.integer({ min: 0, max: 3 }),
          cut: fc.integer({ min: 0, max: 4 })
        }),
        { minLength: 1, maxLength: 20 }
      )
    },
    ({ ops }) =>
      Effect.gen(function* () {
        const selector = yield* KeySelector.KeySelector
        let current = 0
        let peak = 0
        const order: Array<number> = []
        const fibers = yield* Effect.forEach(ops, (op, i) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(
              KeySelector.use(selector, { attempt: 1, tried: new Set(), deadline: 1e9 }, () =>
                Effect.gen(function* () {
                  order.push(i)
                  current++
                  peak = Math.max(peak, current)
                  yield* Effect.sleep(op.hold).pipe(Effect.ensuring(Effect.sync(() => current--)))
                })
              )
            )
            yield* Effect.yieldNow()
            return fiber
          })
        )
        // Some are interrupted at the very instant holders release (same TestClock tick), with the
        // interrupt in flight before the hand-over runs.
        const cut = ops.flatMap((op, i) => (op.wait ? [] : [[i, op.cut] as const]))
        const interrupter = yield* Effect.fork(
          Effect.forEach(
            cut,
            ([i, at]) => Effect.zipRight(Effect.sleep(at), Fiber.interruptFork(fibers[i]!)),
            {
              concurrency: "unbounded",
              discard: true
            }
          )
        )
        yield* TestClock.adjust(10 * ops.length)
        yield* Fiber.join(interrupter)
        const exits = yield* Effect.forEach(fibers, Fiber.await)
        expect(peak).toBeLessThanOrEqual(1)
        const status = yield* statusRef.current
        expect(status.inUse.size).toBe(0)
        expect(status.waiting).toBe(0)
        // Those never interrupted were all served, in arrival order.
        const survivors = ops.flatMap((op, i) => (op.wait ? [i] : []))
        survivors.forEach((i) => expect(Exit.isSuccess(exits[i]!)).toBe(true))
        expect(order.filter((i) => ops[i]!.wait)).toEqual(survivors)
        const s = yield* Scope.make()
        expect(yield* hold(s)).toBe("a")
        yield* Scope.close(s, Exit.void)
      }).pipe(Effect.provide(env([key("a", { maxConcurrency: 1 })]))),
    { fastCheck: { numRuns: 60 } }
  )

  it.effect.prop(
    "per-key in-flight never exceeds its cap, and every request is served",
    {
      caps: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
      holds: fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 25 })
    },
    ({ caps, holds }) =>
      Effect.gen(function* () {
        const now = new Map<string, number>()
        const peak = new Map<string, number>()
        const selector = yield* KeySelector.KeySelector
        const one = (ms: number) =>
          KeySelector.use(selector, { attempt: 1, tried: new Set(), deadline: 1e9 }, (lease) => {
            const id = lease.key.id
            now.set(id, (now.get(id) ?? 0) + 1)
            peak.set(id, Math.max(peak.get(id) ?? 0, now.get(id)!))
            return Effect.sleep(ms).pipe(Effect.ensuring(Effect.sync(() => now.set(id, now.get(id)! - 1))))
          })
        const fiber = yield* Effect.fork(
          Effect.forEach(holds, one, { concurrency: "unbounded", discard: true })
        )
        yield* TestClock.adjust(50 * holds.length)
        yield* Fiber.join(fiber)
        caps.forEach((cap, i) => expect(peak.get(`k${i}`) ?? 0).toBeLessThanOrEqual(cap))
        expect((yield* statusRef.current).inUse.size).toBe(0)
      }).pipe(Effect.provide(env(caps.map((cap, i) => key(`k${i}`, { maxConcurrency: cap }))))),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("an inner selection interrupted while it waits takes no permit, and the key stays usable", () =>
    Effect.gen(function* () {
      const log: Array<string> = []
      const started = yield* Deferred.make<void>()
      // An inner selector that waits (interruptibly, as the contract asks) and never answers.
      const inner = KeySelector.make(() =>
        Effect.zipRight(
          Deferred.succeed(started, undefined),
          Effect.interruptible(Effect.never).pipe(
            Effect.onInterrupt(() => Effect.sync(() => log.push("inner gave up")))
          )
        )
      )
      const { selector, status } = yield* ConcurrencyLimited.makeWithStatus({ defaultMax: 1 }).pipe(
        Effect.provideService(KeySelector.KeySelector, inner),
        Effect.provide(base([key("a")]))
      )
      const fiber = yield* Effect.fork(
        KeySelector.use(selector, { attempt: 1, tried: new Set() }, () => Effect.void)
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      expect((yield* status).inUse.size).toBe(0)
      expect((yield* status).waiting).toBe(0)
      expect(log).toEqual(["inner gave up"])
    })
  )

  it.effect("a lease reported once gives its permit back; use and scoped report on every exit", () =>
    Effect.gen(function* () {
      const selector = yield* KeySelector.KeySelector
      const req = { attempt: 1, tried: new Set<string>() }
      const lease = yield* selector.select(req)
      expect((yield* statusRef.current).inUse.get("a")).toBe(1)
      yield* lease.report(KeySelector.success(5))
      expect((yield* statusRef.current).inUse.size).toBe(0)
      // A second report frees no second permit: the cap of 1 still holds.
      const other = yield* selector.select(req)
      yield* lease.report(KeySelector.success(5))
      expect((yield* statusRef.current).inUse.get("a")).toBe(1)
      yield* other.report(KeySelector.success(5))
      // `use`: failed, the permit still comes back.
      const failed = yield* KeySelector.use(selector, req, () => Effect.fail("boom" as const)).pipe(
        Effect.flip
      )
      expect(failed).toBe("boom")
      expect((yield* statusRef.current).inUse.size).toBe(0)
      // `scoped`: reported early, then the scope closes; the permit comes back once, not twice.
      yield* Effect.scoped(
        Effect.flatMap(KeySelector.scoped(selector, req), (l) => l.report(KeySelector.success(1)))
      )
      expect((yield* statusRef.current).inUse.size).toBe(0)
      const s = yield* Scope.make()
      expect(yield* hold(s)).toBe("a")
      expect(yield* hold(s)).toBe("a")
      expect((yield* statusRef.current).inUse.get("a")).toBe(2)
      yield* Scope.close(s, Exit.void)
      expect((yield* statusRef.current).inUse.size).toBe(0)
    }).pipe(Effect.provide(env([key("a")])))
  )
})
