import { describe, expect, it } from "@effect/vitest"
import {
  Balancer,
  CreditLookup,
  Key,
  KeyPool,
  KeySelector,
  Monitor,
  StateStore,
  UpstreamError
} from "@or-balancer/core"
import {
  ByModel,
  ConcurrencyLimited,
  CreditLedger,
  HealthAware,
  RoundRobin,
  Threshold,
  Weighted
} from "@or-balancer/strategies"
import { Effect, FastCheck as fc, Layer, Redacted } from "effect"
import { key } from "./util.js"

const pool = [key("a", { weight: 2 }), key("b"), key("c", { models: ["anthropic/*"] })]

// The README's composition: by-model -> health-aware -> credit threshold -> concurrency-limited -> weighted.
const selector = ByModel.layer([{ pattern: "anthropic/*" }, { pattern: "openai/*", keys: ["a", "b"] }]).pipe(
  Layer.provide(HealthAware.layer({ failureThreshold: 2 })),
  Layer.provide(Threshold.layer({ threshold: 0.5, stay: false })),
  Layer.provide(ConcurrencyLimited.layer({ defaultMax: 4 })),
  Layer.provide(Weighted.layer())
)
const env = Balancer.layer({ budget: false }).pipe(
  Layer.provideMerge(selector),
  Layer.provideMerge(CreditLedger.layer()),
  Layer.provideMerge(
    CreditLookup.layerMemory({
      a: CreditLookup.keyInfo(10),
      b: CreditLookup.keyInfo(10),
      c: CreditLookup.keyInfo(0.1)
    })
  ),
  Layer.provideMerge(
    Layer.mergeAll(KeyPool.layer(pool).pipe(Layer.orDie), StateStore.layerMemory, Monitor.layer)
  )
)

// A custom strategy in a few lines: the candidate with the shortest id.
const Shortest = Layer.effect(
  KeySelector.KeySelector,
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    return KeySelector.make((request) =>
      Effect.flatMap(pool.get, (keys) => {
        const [best] = [...KeySelector.candidates(request, keys)].sort((x, y) => x.id.length - y.id.length)
        return best === undefined
          ? Effect.fail(KeySelector.explain(request, keys, 0))
          : Effect.succeed(KeySelector.lease(best))
      })
    )
  })
)

describe("composition through Balancer", () => {
  it.effect("the full stack routes, fails over, learns health and spends credit", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const seen: Array<string> = []
      const answer = yield* balancer.run(
        { model: "openai/gpt-4o" },
        (k) => {
          seen.push(k.id)
          return k.id === "a"
            ? Effect.fail(new UpstreamError.ServerError({ message: "502", status: 502 }))
            : Effect.succeed({ from: k.id, cost: 0.2 })
        },
        { costOf: (r) => r.cost }
      )
      expect(answer.from).toBe("b")
      expect(seen).toEqual(["a", "b"])
      const health = yield* HealthAware.status()
      expect(health.keys.find((k) => k.id === "a")!.consecutiveFailures).toBe(1)
      const ledger = yield* Effect.flatMap(CreditLedger.CreditLedger, (l) => l.snapshot)
      expect(ledger.find((e) => e.id === "b")!.available).toBeCloseTo(9.8)
      // c serves anthropic but is under the threshold: a and b take it.
      const anthropic = yield* balancer.run({ model: "anthropic/claude-sonnet-4" }, (k) =>
        Effect.succeed(k.id)
      )
      expect(["a", "b"]).toContain(anthropic)
      const unknown = yield* Effect.flip(
        balancer.run({ model: "mistral/large" }, (k) => Effect.succeed(k.id))
      )
      expect(unknown._tag).toBe("NoKeyAvailable")
    }).pipe(Effect.provide(env))
  )

  it.effect("a custom strategy composes under the decorators", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      expect(yield* balancer.run({}, (k) => Effect.succeed(k.id))).toBe("b")
    }).pipe(
      Effect.provide(
        Balancer.layer().pipe(
          Layer.provideMerge(HealthAware.layer().pipe(Layer.provide(Shortest))),
          Layer.provideMerge(
            Layer.mergeAll(
              KeyPool.layer([
                Key.make({ id: "long", secret: Redacted.make("sk-or-v1-aaaaaaaaaaaa") }),
                Key.make({ id: "b", secret: Redacted.make("sk-or-v1-bbbbbbbbbbbb") })
              ]).pipe(Layer.orDie),
              StateStore.layerMemory,
              Monitor.layer
            )
          )
        )
      )
    )
  )

  it.effect.prop(
    "no key is used twice for one request while another eligible key is untried",
    { n: fc.integer({ min: 1, max: 6 }), strategy: fc.constantFrom("rr", "weighted", "health") },
    ({ n, strategy }) => {
      const ks = Array.from({ length: n }, (_, i) => key(`k${i}`, { weight: 1 + (i % 3) }))
      const inner = strategy === "rr" ? RoundRobin.layer() : Weighted.layer()
      const sel =
        strategy === "health" ? HealthAware.layer({ panicThreshold: 1 }).pipe(Layer.provide(inner)) : inner
      return Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const seen: Array<string> = []
        yield* Effect.flip(
          balancer.run({}, (k) => {
            seen.push(k.id)
            return Effect.fail(new UpstreamError.ServerError({ message: "503", status: 503 }))
          })
        )
        expect(seen.length).toBe(n)
        expect(new Set(seen).size).toBe(n)
      }).pipe(
        Effect.provide(
          Balancer.layer({ maxAttempts: n, budget: false }).pipe(
            Layer.provideMerge(sel),
            Layer.provideMerge(
              Layer.mergeAll(KeyPool.layer(ks).pipe(Layer.orDie), StateStore.layerMemory, Monitor.layer)
            )
          )
        )
      )
    },
    { fastCheck: { numRuns: 30 } }
  )
})
