/**
 * Composing strategies: sticky sessions over health over per-key concurrency over live credit,
 * each a layer that requires the one below. 300 requests at 16 in flight against the demo pool
 * (a revoked key, a flaky one, a rate-limited account, a key with a one-cent cap).
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as ConcurrencyLimited from "@or-balancer/strategies/ConcurrencyLimited"
import * as CreditAware from "@or-balancer/strategies/CreditAware"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Sticky from "@or-balancer/strategies/Sticky"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"
import * as Target from "../lib/Target.js"

export const simulator = Simulator.demoPool(7)

// Read bottom-up: credit ranks keys, concurrency caps each, health ejects bad ones, sticky keeps a session on one key.
const strategy = Sticky.layer.pipe(
  Layer.provide(HealthAware.layer()),
  Layer.provide(ConcurrencyLimited.layer({ defaultMax: 8 })),
  Layer.provide(CreditAware.layer())
)

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  const target = yield* Target.Target
  const results = yield* Effect.forEach(
    Array.from({ length: 300 }, (_, i) => i),
    (i) =>
      Effect.either(
        client.chat({
          ...Pools.ask(`Question ${i}`),
          ...(i % 3 === 0 ? { session_id: `session-${i % 4}` } : {})
        })
      ),
    { concurrency: 16 }
  )
  const succeeded = results.filter(Either.isRight).length
  const stats = yield* monitor.stats
  const health = yield* HealthAware.status()
  const sim = target.simulator ? yield* target.simulator.stats : undefined
  yield* Console.log(`300 requests: ${succeeded} answered, ${stats.retries} retries`)
  for (const k of stats.keys) {
    const h = health.keys.find((x) => x.id === k.id)
    yield* Console.log(
      `  ${k.id.padEnd(13)} ${Runner.bar(k.share, 20)} ${String(k.requests).padStart(4)}  ${h?.state ?? ""}`
    )
  }
  if (sim) yield* Console.log(`overspend past any cap: ${Runner.usd(sim.overspend)}`)
  return {
    succeeded,
    retries: stats.retries,
    overspend: sim?.overspend,
    distribution: Object.fromEntries(stats.keys.map((k) => [k.id, k.requests]))
  }
}).pipe(Effect.provide(Stack.layer(strategy)))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
