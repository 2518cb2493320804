/**
 * The credit threshold end to end: the simulator's keys spend their caps, `HttpCreditLookup` reads
 * `GET /key`, the `CreditLedger` caches and debits, and `Threshold` moves on, fails typed when
 * every key is under, and re-admits a key once a refresh shows its credit again after its
 * `limit_reset` period rolled over.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Balancer, Key, KeyPool, Monitor, StateStore } from "@or-balancer/core"
import { CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { type Duration, Effect, Layer } from "effect"
import { HttpCreditLookup, OpenRouterClient } from "../src/index.js"
import * as Simulator from "@or-balancer/simulator/Simulator"

// Each answer costs exactly 0.10 USD: 10 completion tokens at 10,000 USD per million, prompts free.
const MODEL = "test/ten-cents"
const request = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 10 }

const stack = (
  sim: Simulator.Handle,
  options: { readonly ttl: Duration.DurationInput; readonly deadline: Duration.DurationInput }
) => {
  const keys = sim.keys.map((k) => Key.make({ id: k.label, secret: k.secret }))
  return OpenRouterClient.layer.pipe(
    Layer.provideMerge(Balancer.layer({ deadline: options.deadline })),
    Layer.provideMerge(Threshold.layer({ threshold: 0.15 }).pipe(Layer.provide(RoundRobin.layer()))),
    Layer.provideMerge(CreditLedger.layer({ ttl: options.ttl })),
    Layer.provideMerge(HttpCreditLookup.layer),
    Layer.provideMerge(Layer.mergeAll(KeyPool.layer(keys), Monitor.layer, StateStore.layerMemory)),
    Layer.provideMerge(
      Layer.merge(NodeHttpClient.layerUndici, OpenRouterClient.layerClientConfig({ baseUrl: sim.baseUrl }))
    )
  )
}

const served = (sim: Simulator.Handle) =>
  Effect.map(sim.stats, (s) => Object.fromEntries(Object.entries(s.keys).map(([k, v]) => [k, v.requests])))

describe("Threshold over HttpCreditLookup against the simulator", () => {
  it.live("moves on under the threshold, fails typed when all are under, re-admits after a refresh", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 8,
        models: [{ id: MODEL, promptPrice: 0, completionPrice: 10_000 }],
        keys: [
          { label: "a", secret: Simulator.simulatedSecret(8, 0), limit: 0.3, limitReset: "daily" },
          { label: "b", secret: Simulator.simulatedSecret(8, 1), limit: 0.3, limitReset: "daily" }
        ]
      })
      yield* Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const ledger = yield* CreditLedger.CreditLedger
        const pool = yield* KeyPool.KeyPool
        for (let i = 0; i < 4; i++) yield* client.chat(request)
        // a: 0.30 -> 0.20 (stay) -> 0.10 (under 0.15: move on); then b the same way.
        expect(yield* served(sim)).toEqual({ a: 2, b: 2 })
        const under = yield* Effect.flip(client.chat(request))
        expect(under._tag).toBe("NoKeyAvailable")
        expect(under._tag === "NoKeyAvailable" && under.reason).toBe("credit")

        // a's period rolls over upstream; the ledger does not know until it looks again.
        yield* sim.resetCredit("a")
        expect((yield* Effect.flip(client.chat(request)))._tag).toBe("NoKeyAvailable")
        const a = (yield* pool.get).find((k) => k.id === "a")!
        yield* ledger.refresh(a)
        yield* client.chat(request)
        yield* client.chat(request)
        expect(yield* served(sim)).toEqual({ a: 4, b: 2 })
        const stats = yield* sim.stats
        expect(stats.keys.a!.byOutcome["402"]).toBeUndefined()
        expect(stats.keys.b!.byOutcome["402"]).toBeUndefined()
      }).pipe(Effect.provide(stack(sim, { ttl: "1 hour", deadline: "0 millis" })))
    }).pipe(Effect.scoped)
  )

  it.live("a request waits, within its deadline, for the key's limit_reset and the refresh after it", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 9,
        models: [{ id: MODEL, promptPrice: 0, completionPrice: 10_000 }],
        keys: [{ label: "a", secret: Simulator.simulatedSecret(9, 0), limit: 0.3, limitReset: "daily" }]
      })
      yield* Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const ledger = yield* CreditLedger.CreditLedger
        yield* client.chat(request)
        yield* client.chat(request)
        const [entry] = yield* ledger.snapshot
        expect(entry!.available).toBeCloseTo(0.1)
        // From now on a's period is short: it rolls over while the next request waits.
        yield* sim.updateKey("a", { resetPeriodMs: 500 })
        const answer = yield* client.chat(request)
        expect(answer.usage?.cost).toBeCloseTo(0.1)
        const stats = yield* sim.stats
        expect(stats.keys.a!.requests).toBe(3)
        expect(stats.keys.a!.byOutcome["402"]).toBeUndefined()
        // The cached answer said 0.10 and was looked up again (at least once) before the request went.
        expect(stats.keys.a!.keyLookups).toBeGreaterThanOrEqual(2)
      }).pipe(Effect.provide(stack(sim, { ttl: "100 millis", deadline: "30 seconds" })))
    }).pipe(Effect.scoped)
  )
})
