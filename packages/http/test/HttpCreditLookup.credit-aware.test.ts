/**
 * The strategies' credit-aware stack over the real lookup: `GET /key` answers are cached and
 * single-flight (the simulator counts lookups), and routing follows live credit.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Balancer, Key, KeyPool, Monitor, StateStore } from "@or-balancer/core"
import { CreditAware, CreditLedger } from "@or-balancer/strategies"
import { Effect, Layer } from "effect"
import { HttpCreditLookup, OpenRouterClient } from "../src/index.js"
import * as Simulator from "@or-balancer/simulator/Simulator"

const request = { model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }

describe("credit-aware routing over HttpCreditLookup", () => {
  it.live("looks each key up once however many requests race, and routes to the most credit", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 5,
        keys: [
          { label: "small", secret: Simulator.simulatedSecret(5, 0), limit: 1 },
          { label: "big", secret: Simulator.simulatedSecret(5, 1), limit: 50 },
          { label: "empty", secret: Simulator.simulatedSecret(5, 2), limit: 10, usage: 10 }
        ]
      })
      const keys = sim.keys.map((k) => Key.make({ id: k.label, secret: k.secret }))
      const http = Layer.merge(
        NodeHttpClient.layerUndici,
        OpenRouterClient.layerClientConfig({ baseUrl: sim.baseUrl })
      )
      const env = OpenRouterClient.layer.pipe(
        Layer.provideMerge(Balancer.layer()),
        Layer.provideMerge(CreditAware.layer({ estimate: 0.0001 })),
        Layer.provideMerge(CreditLedger.layer({ ttl: "1 minute" })),
        Layer.provideMerge(HttpCreditLookup.layer),
        Layer.provideMerge(Layer.mergeAll(KeyPool.layer(keys), Monitor.layer, StateStore.layerMemory)),
        Layer.provideMerge(http)
      )
      yield* Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const answers = yield* Effect.forEach(Array.from({ length: 20 }), () => client.chat(request), {
          concurrency: 20
        })
        expect(answers.length).toBe(20)
        const stats = yield* sim.stats
        expect([
          stats.keys.small?.keyLookups,
          stats.keys.big?.keyLookups,
          stats.keys.empty?.keyLookups
        ]).toEqual([1, 1, 1])
        expect(stats.keys.big?.requests).toBe(20)
        expect(stats.keys.empty?.requests).toBe(0)
        // The ledger saw each answer's cost.
        const ledger = yield* CreditLedger.CreditLedger
        const big = (yield* ledger.snapshot).find((e) => e.id === "big")!
        expect(big.spent).toBeCloseTo(stats.keys.big!.spend, 9)
      }).pipe(Effect.provide(env))
    }).pipe(Effect.scoped)
  )
})
