import { describe, expect, it } from "@effect/vitest"
import { Balancer, KeyPool, KeySelector, Monitor, StateStore } from "@or-balancer/core"
import { RoundRobin, Sticky } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import { base, keys, refuse, request, decideNow } from "./util.js"
import * as TwoPaths from "./twoPaths.js"

// Sticky.decide: the session's key asked of the inner selector synchronously, its own
// choice when refused at once, undecided where the inner is.

const pool = keys("a", "b", "c", "d")
const ids = pool.map((k) => k.id)

type Inner = Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore>

/** Round robin that never takes c (both paths refuse it at once), so sessions owned by c fall back. */
const pickyInner: Inner = Layer.effect(
  KeySelector.KeySelector,
  Effect.map(RoundRobin.make(), (rr) => {
    const narrow = (req: KeySelector.SelectRequest) => KeySelector.withGate(req, refuse("c"))
    return KeySelector.fromDecide((req) => rr.decide(narrow(req)))
  })
)

/** Round robin whose `decide` answers a `Wait` whenever a is no candidate (as if it had to wait). */
const hesitantInner: Inner = Layer.effect(
  KeySelector.KeySelector,
  Effect.map(RoundRobin.make(), (rr) =>
    KeySelector.fromDecide((req) =>
      !KeySelector.isCandidate(req, pool[0]!)
        ? new KeySelector.Wait(Effect.merge(rr.select(req)))
        : rr.decide(req)
    )
  )
)

const stack = (inner: Inner = pickyInner) =>
  Sticky.layer.pipe(Layer.provideMerge(inner), Layer.provideMerge(base(pool)))

const cursorOf = (ctx: Context.Context<StateStore.StateStore>) =>
  Context.get(ctx, StateStore.StateStore).entries("or-balancer/round-robin")

/** A session id whose key, with every key a candidate, is `id`. */
const ownedBy = (id: string): string => {
  for (let i = 0; ; i++) if (Sticky.owner(`session-${i}`, pool)!.id === id) return `session-${i}`
}

// One session owned by each key (c's fall back), and a few more.
const sessions = [...ids.map(ownedBy), "s1", "s2", "s3"]

describe("Sticky.decide", () => {
  it.effect.prop(
    "random sessions and gates through either path: same picks and refusals, same inner state",
    {
      requests: fc.array(
        fc.record({ affinity: fc.constantFrom(undefined, ...sessions), refused: fc.subarray(ids) }),
        { maxLength: 30, size: "max" }
      )
    },
    ({ requests }) =>
      TwoPaths.checkRequests(
        () => stack(),
        cursorOf,
        { undecided: "never" }, // the inner never waits
        requests
      ),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("a session keeps its key; refused at once, it takes the inner's own choice, as select does", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const selector = Context.get(yield* Layer.build(stack()), KeySelector.KeySelector)
        const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(selector, r)
        const ownedByC = ownedBy("c")
        const ownedByB = ownedBy("b")
        const kept = [1, 2, 3].map(
          () => (decideAtOnce(request({ affinity: ownedByB })) as KeySelector.Lease).key.id
        )
        expect(kept).toEqual(["b", "b", "b"])
        // c is refused by the inner: the round robin's own choice, advancing its cursor.
        const fallback = [1, 2].map(
          () => (decideAtOnce(request({ affinity: ownedByC })) as KeySelector.Lease).key.id
        )
        expect(fallback).toEqual(["d", "a"])
        expect((yield* selector.select(request({ affinity: ownedByC }))).key.id).toBe("b")
      })
    )
  )

  it.effect("a Wait, changing nothing, where the inner is undecided for the session's key", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(stack(hesitantInner))
        const decideAtOnce = (r: KeySelector.SelectRequest) =>
          decideNow(Context.get(ctx, KeySelector.KeySelector), r)
        const ownedByA = ownedBy("a")
        const ownedByD = ownedBy("d")
        const before = yield* cursorOf(ctx)
        // Gated to d alone, a is out: the inner is undecided, so Sticky is.
        expect(decideAtOnce(request({ affinity: ownedByD }))).toBeUndefined()
        expect(yield* cursorOf(ctx)).toEqual(before)
        expect((decideAtOnce(request({ affinity: ownedByA })) as KeySelector.Lease).key.id).toBe("a")
        // Without affinity the request passes straight through.
        expect((decideAtOnce(request()) as KeySelector.Lease).key.id).toBe("b")
      })
    )
  )

  it.effect("a Wait when the inner selector is written as an Effect", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const plain: Inner = Layer.effect(
          KeySelector.KeySelector,
          Effect.map(RoundRobin.make(), (rr) => KeySelector.make(rr.select))
        )
        const selector = Context.get(yield* Layer.build(stack(plain)), KeySelector.KeySelector)
        expect(selector.decide(request())).toBeInstanceOf(KeySelector.Wait)
        const owner = Sticky.owner("s1", pool)!.id
        expect((yield* selector.select(request({ affinity: "s1" }))).key.id).toBe(owner)
      })
    )
  )

  it.effect("through Balancer.unsafeStart: a session's requests go to its key", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const monitor = yield* Monitor.Monitor
      const owner = Sticky.owner("s1", pool)!.id
      const started = [1, 2, 3].map(() => balancer.unsafeStart({ affinity: "s1" })!)
      expect(started.map((s) => s.key.id)).toEqual([owner, owner, owner])
      expect((yield* monitor.stats).inFlight).toBe(3)
      started.forEach((s) => s.unsafeSucceed())
      expect(yield* monitor.stats).toMatchObject({ inFlight: 0, successes: 3 })
    }).pipe(
      Effect.provide(
        Balancer.layer().pipe(
          Layer.provideMerge(stack(RoundRobin.layer())),
          Layer.provideMerge(Monitor.layer)
        )
      )
    )
  )
})
