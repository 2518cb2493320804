import { describe, expect, it } from "@effect/vitest"
import { Balancer, KeyPool, KeySelector, Monitor, StateStore } from "@or-balancer/core"
import { ByModel, RoundRobin, Weighted } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import { base, key, request, decideNow, isLeaseNow } from "./util.js"
import * as TwoPaths from "./twoPaths.js"

// ByModel.decide: the same route as `select`, asking that route's selector synchronously.

const pool = [
  key("a", { weight: 2 }),
  key("b"),
  key("c", { weight: 3 }),
  key("d", { models: ["openai/gpt-4o-mini"] })
]
const ids = pool.map((k) => k.id)

type Inner = Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore>

const routes = (wildcard: boolean, anthropic: Inner = RoundRobin.layer({ name: "anthropic" })) => [
  { pattern: "anthropic/*", keys: ["a", "b"], strategy: anthropic },
  { pattern: "openai/gpt-4o", keys: ["c", "d"] },
  ...(wildcard ? [{ pattern: "*", keys: ["b", "c", "d"], strategy: RoundRobin.layer({ name: "rest" }) }] : [])
]

const stack = (wildcard: boolean, anthropic?: Inner, inner: Inner = Weighted.layer()) =>
  ByModel.layer(routes(wildcard, anthropic)).pipe(Layer.provideMerge(inner), Layer.provideMerge(base(pool)))

/** Every cursor and weighted total the routes keep. */
const stateOf = (ctx: Context.Context<StateStore.StateStore>) =>
  Effect.gen(function* () {
    const store = Context.get(ctx, StateStore.StateStore)
    return {
      cursors: yield* store.entries("or-balancer/round-robin"),
      weighted: yield* store.entries("or-balancer/weighted")
    }
  })

/** Round robin whose `decide` answers a `Wait` for requests with affinity "wait" (as if it had to wait). */
const hesitant = (name: string): Inner =>
  Layer.effect(
    KeySelector.KeySelector,
    Effect.map(RoundRobin.make({ name }), (rr) =>
      KeySelector.fromDecide((req) =>
        req.affinity === "wait" ? new KeySelector.Wait(Effect.merge(rr.select(req))) : rr.decide(req)
      )
    )
  )

describe("ByModel.decide", () => {
  it.effect.prop(
    "random requests through either path: same picks and refusals, same route state",
    {
      wildcard: fc.boolean(),
      requests: fc.array(
        fc.record({
          model: fc.constantFrom(undefined, "anthropic/claude-sonnet-4", "openai/gpt-4o", "mistral/large"),
          refused: fc.subarray(ids)
        }),
        { maxLength: 30, size: "max" }
      )
    },
    ({ requests, wildcard }) =>
      TwoPaths.checkRequests(
        () => stack(wildcard),
        stateOf,
        { undecided: "never" }, // round robin and weighted never wait
        requests
      ),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("a model no route takes is refused at once, as select refuses it", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const selector = Context.get(yield* Layer.build(stack(false)), KeySelector.KeySelector)
        const req = request({ model: "mistral/large" })
        const refused = decideNow(selector, req)
        expect(refused).toBeInstanceOf(KeySelector.NoKeyAvailable)
        expect((refused as KeySelector.NoKeyAvailable).reason).toBe("model")
        expect(refused).toEqual(yield* Effect.flip(selector.select(req)))
      })
    )
  )

  it.effect("a Wait, changing nothing, where the route's selector is undecided", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(stack(true, hesitant("anthropic")))
        const decideAtOnce = (r: KeySelector.SelectRequest) =>
          decideNow(Context.get(ctx, KeySelector.KeySelector), r)
        const claude = { model: "anthropic/claude-sonnet-4" }
        const before = yield* stateOf(ctx)
        expect(decideAtOnce(request({ ...claude, affinity: "wait" }))).toBeUndefined()
        expect(yield* stateOf(ctx)).toEqual(before)
        // Other routes, and the same route when it decides, decide.
        expect((decideAtOnce(request({ ...claude })) as KeySelector.Lease).key.id).toBe("a")
        expect((decideAtOnce(request({ affinity: "wait" })) as KeySelector.Lease).key.id).toBe("b")
      })
    )
  )

  it.effect("a route whose selector is written as an Effect waits; the other routes keep the fast path", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const plain = (name: string): Inner =>
          Layer.effect(
            KeySelector.KeySelector,
            Effect.map(RoundRobin.make({ name }), (rr) => KeySelector.make(rr.select))
          )
        const claude = request({ model: "anthropic/claude-sonnet-4" })
        const gpt4o = request({ model: "openai/gpt-4o" })
        // The inner (used by the route with no strategy of its own) has none.
        const noSyncInner = yield* Layer.build(stack(true, undefined, plain("default")))
        const a = Context.get(noSyncInner, KeySelector.KeySelector)
        expect(decideNow(a, gpt4o)).toBeUndefined()
        expect((decideNow(a, claude) as KeySelector.Lease).key.id).toBe("a")
        expect((yield* a.select(gpt4o)).key.id).toBe("c")
        // A route's own strategy has none.
        const noSyncRoute = yield* Layer.build(stack(true, plain("anthropic")))
        const b = Context.get(noSyncRoute, KeySelector.KeySelector)
        const before = yield* stateOf(noSyncRoute)
        expect(decideNow(b, claude)).toBeUndefined()
        expect(yield* stateOf(noSyncRoute)).toEqual(before)
        expect((yield* b.select(claude)).key.id).toBe("a")
        expect(isLeaseNow(decideNow(b, gpt4o))).toBe(true)
        // None at all: absent.
        const none = yield* Layer.build(
          ByModel.layer([{ pattern: "*", strategy: plain("rest") }]).pipe(
            Layer.provideMerge(plain("default")),
            Layer.provideMerge(base(pool))
          )
        )
        expect(Context.get(none, KeySelector.KeySelector).decide(request())).toBeInstanceOf(KeySelector.Wait)
      })
    )
  )

  it.effect("through Balancer.unsafeStart: each model on its route, synchronously", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const monitor = yield* Monitor.Monitor
      const claude = [1, 2, 3].map(() => balancer.unsafeStart({ model: "anthropic/claude-sonnet-4" })!)
      expect(claude.map((s) => s.key.id)).toEqual(["a", "b", "a"])
      const gpt = balancer.unsafeStart({ model: "openai/gpt-4o" })!
      expect(gpt.key.id).toBe("c") // d serves only gpt-4o-mini
      // No route: the fast path leaves it to `run`, which fails it.
      expect(balancer.unsafeStart({ model: "mistral/large" })).toBeUndefined()
      expect((yield* monitor.stats).inFlight).toBe(4)
      claude.forEach((s) => s.unsafeSucceed(0.01))
      gpt.unsafeCancel()
      expect(yield* monitor.stats).toMatchObject({ inFlight: 0, successes: 3 })
    }).pipe(
      Effect.provide(
        Balancer.layer().pipe(Layer.provideMerge(stack(false)), Layer.provideMerge(Monitor.layer))
      )
    )
  )
})
