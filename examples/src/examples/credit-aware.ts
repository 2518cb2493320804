/**
 * Credit-aware (the seed's `CreditAwareBalancer`): requests go to the key with the most live
 * credit. Credit comes from `GET /key` once per key (single flight, cached), then is debited by
 * each answer's `usage.cost` and reserved for requests in flight, so there is no lookup per request.
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as CreditAware from "@or-balancer/strategies/CreditAware"
import * as CreditLedger from "@or-balancer/strategies/CreditLedger"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Runner from "../lib/Runner.js"
import * as Pools from "../lib/Pools.js"
import * as Stack from "../lib/Stack.js"
import * as Target from "../lib/Target.js"

export const simulator: Simulator.Config = {
  seed: 11,
  keys: [
    { label: "low", account: "acme", secret: Simulator.simulatedSecret(11, 0), limit: 0.5 },
    { label: "high", account: "acme", secret: Simulator.simulatedSecret(11, 1), limit: 5 },
    { label: "mid", account: "acme", secret: Simulator.simulatedSecret(11, 2), limit: 2 }
  ],
  latency: { kind: "fixed", ms: 2 }
}

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  const ledger = yield* CreditLedger.CreditLedger
  const target = yield* Target.Target
  yield* Effect.forEach(
    Array.from({ length: 20 }, (_, i) => i),
    (i) => client.chat(Pools.ask(`Question ${i}`, "anthropic/claude-sonnet-4")),
    { concurrency: 4, discard: true }
  )
  const stats = yield* monitor.stats
  const distribution = Object.fromEntries(stats.keys.map((k) => [k.id, k.requests]))
  const credit = Object.fromEntries(
    (yield* ledger.snapshot).map((e) => [e.id, e.available === null ? null : Number(e.available.toFixed(5))])
  )
  const lookups = target.simulator
    ? Object.fromEntries(
        Object.entries((yield* target.simulator.stats).keys).map(([id, k]) => [id, k.keyLookups])
      )
    : {}
  yield* Console.log("20 requests, 4 at a time; each goes to the key with the most credit left:")
  for (const [id, n] of Object.entries(distribution)) yield* Console.log(`  ${id.padEnd(5)} ${n} requests`)
  yield* Console.log(`credit left (ledger): ${JSON.stringify(credit)}`)
  yield* Console.log(`GET /key lookups per key: ${JSON.stringify(lookups)}`)
  return { distribution, credit, lookups }
}).pipe(Effect.provide(Stack.layer(CreditAware.layer())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
