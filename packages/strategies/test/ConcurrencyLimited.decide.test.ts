import { describe, expect, it } from "@effect/vitest"
import { KeyPool, KeySelector, StateStore, UpstreamError } from "@or-balancer/core"
import { ConcurrencyLimited, RoundRobin } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Fiber, Layer, TestClock } from "effect"
import * as Permits from "./permits.js"
import * as TwoPaths from "./twoPaths.js"
import { base, key, refuse, request, decideNow, isLeaseNow } from "./util.js"

// ConcurrencyLimited.decide: the same choice as `select`, synchronously; a `Wait` where
// `select` would wait for a permit.

const limited = (
  inner: Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore>
) => Permits.limited.pipe(Layer.provideMerge(inner))

const pool = [key("a", { maxConcurrency: 1 }), key("b"), key("c", { maxConcurrency: 1 })]

const stack = (ks: ReadonlyArray<ReturnType<typeof key>> = pool) =>
  limited(RoundRobin.layer()).pipe(Layer.provideMerge(base(ks)))

const statusOf = Permits.permitsOf

const server = new UpstreamError.ServerError({ message: "502", status: 502 })
const outcomeOf = (kind: "success" | "failure" | "cancelled"): KeySelector.Outcome =>
  kind === "success"
    ? KeySelector.success("1 millis", 0.01)
    : kind === "failure"
      ? KeySelector.failure("1 millis", server)
      : KeySelector.cancelled()

const op = fc.oneof(
  TwoPaths.selectOp(["a", "b", "c"]),
  TwoPaths.reportOp(
    fc.constantFrom("success" as const, "failure" as const, "cancelled" as const).map(outcomeOf)
  )
)

describe("ConcurrencyLimited.decide", () => {
  it.effect.prop(
    "random selections and reports, through select and through decide: permits match the open leases and never exceed a cap; same picks",
    { ops: fc.array(op, { maxLength: 40 }) },
    ({ ops }) =>
      TwoPaths.check(
        () => stack(),
        statusOf,
        // No deadline: `select` never waits, so the fast path always decides.
        { undecided: "never" },
        ops,
        // Every permit in use is held by a lease not yet reported, and no key is over its cap.
        (status, open) => {
          Permits.expectHeldByOpen(status.inUse, ["a", "b", "c"], open)
          const caps: Record<string, number> = { a: 1, b: 2, c: 1 }
          for (const id of ["a", "b", "c"])
            expect(open.filter((l) => l.key.id === id).length).toBeLessThanOrEqual(caps[id]!)
        }
      ),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect(
    "every candidate full: a Wait while select would wait (nothing taken), the refusal once it would fail",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(
            stack([key("a", { maxConcurrency: 1 }), key("b", { maxConcurrency: 1 })])
          )
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(selector, r)
          const a = decideAtOnce(request({ deadline: 1_000 }))
          const b = decideAtOnce(request({ deadline: 1_000 }))
          expect([a, b].map((l) => (isLeaseNow(l) ? l.key.id : l))).toEqual(["a", "b"])
          const before = yield* statusOf(ctx)
          expect(before).toEqual({ inUse: { a: 1, b: 1 }, waiting: 0 })

          // A deadline ahead: `select` would queue, so the fast path does not decide.
          expect(decideAtOnce(request({ deadline: 1_000 }))).toBeUndefined()
          expect(yield* statusOf(ctx)).toEqual(before)
          // No deadline, or one already passed: `select` fails at once, and so does this, alike.
          const none = decideAtOnce(request())
          expect(none).toBeInstanceOf(KeySelector.NoKeyAvailable)
          expect((none as KeySelector.NoKeyAvailable).reason).toBe("concurrency")
          expect(none).toEqual(yield* Effect.flip(selector.select(request())))
          yield* TestClock.setTime(1_000)
          expect(decideAtOnce(request({ deadline: 1_000 }))).toEqual(
            yield* Effect.flip(selector.select(request({ deadline: 1_000 })))
          )
          // With a free, once reported back: a gate leaving only the full b waits; leaving none fails.
          ;(a as KeySelector.Lease).unsafeReport(KeySelector.success("1 millis"))
          expect(decideAtOnce(request({ deadline: 5_000, gate: refuse("a") }))).toBeUndefined()
          expect(decideAtOnce(request({ deadline: 5_000, gate: refuse("a", "b") }))).toBeInstanceOf(
            KeySelector.NoKeyAvailable
          )
          expect(yield* statusOf(ctx)).toEqual({ inUse: { b: 1 }, waiting: 0 })
        })
      )
  )

  it.effect("a permit given back by unsafeReport is handed to a waiter of select, once", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(stack([key("a", { maxConcurrency: 1 })]))
        const selector = Context.get(ctx, KeySelector.KeySelector)
        const held = decideNow(selector, request({ deadline: 10_000 }))
        expect(isLeaseNow(held)).toBe(true)
        // Reported once by its caller's guard (the Balancer's `Started`, or `KeySelector.once`).
        const lease = KeySelector.once(held as KeySelector.Lease)
        const waiter = yield* Effect.fork(selector.select(request({ deadline: 10_000 })))
        yield* TestClock.adjust("1 millis")
        expect(yield* statusOf(ctx)).toEqual({ inUse: { a: 1 }, waiting: 1 })
        lease.unsafeReport(KeySelector.success("1 millis"))
        const next = yield* Fiber.join(waiter)
        expect(next.key.id).toBe("a")
        expect(yield* statusOf(ctx)).toEqual({ inUse: { a: 1 }, waiting: 0 })
        // Reported again, by either form: the waiter's permit is not freed.
        lease.unsafeReport(KeySelector.success("1 millis"))
        yield* lease.report(KeySelector.cancelled())
        expect(yield* statusOf(ctx)).toEqual({ inUse: { a: 1 }, waiting: 0 })
        expect(decideNow(selector, request({ deadline: 10_000 }))).toBeUndefined()
        yield* next.report(KeySelector.success("1 millis"))
        expect(yield* statusOf(ctx)).toEqual({ inUse: {}, waiting: 0 })
      })
    )
  )

  it.effect(
    "a Wait when the inner selector is written as an Effect; a pool without a synchronous read only matters for waiting",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const plainInner = Layer.effect(
            KeySelector.KeySelector,
            Effect.map(RoundRobin.make(), (rr) => KeySelector.make(rr.select))
          )
          const noSyncInner = yield* Layer.build(limited(plainInner).pipe(Layer.provideMerge(base(pool))))
          expect(Context.get(noSyncInner, KeySelector.KeySelector).decide(request())).toBeInstanceOf(
            KeySelector.Wait
          )

          // The inner round robin reads the real pool (it has its fast path); the decorator a pool without one.
          const asyncPool = Layer.effect(
            KeyPool.KeyPool,
            Effect.map(KeyPool.KeyPool, (p) => KeyPool.KeyPool.of({ ...p, unsafeGet: undefined }))
          )
          const noSyncPool = yield* Layer.build(
            Layer.effect(KeySelector.KeySelector, ConcurrencyLimited.make()).pipe(
              Layer.provide(asyncPool),
              Layer.provideMerge(RoundRobin.layer()),
              Layer.provideMerge(base(pool))
            )
          )
          // The decorator reads the pool only to know whether to wait: a free permit is still decided at once.
          const decided = decideNow(Context.get(noSyncPool, KeySelector.KeySelector), request())
          expect(isLeaseNow(decided) && decided.key.id).toBe("a")
          yield* (decided as KeySelector.Lease).report(KeySelector.cancelled())
          // The Effect path works there too.
          const lease = yield* Context.get(noSyncPool, KeySelector.KeySelector).select(request())
          expect(lease.key.id).toBe("b")
        })
      )
  )
})
