/**
 * Concurrency-limited (the seed's `ConcurrencyLimitedBalancer`): at most two requests in flight
 * per key. A key with a free permit is taken at once; when all are busy a request waits for the
 * first permit to free, without the seed's 10 ms polling loop. 30 requests at once over 3 keys.
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as ConcurrencyLimited from "@or-balancer/strategies/ConcurrencyLimited"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"
import * as Target from "../lib/Target.js"

export const simulator = Pools.healthy(3, { latencyMs: 30 })
export const keys = () => ({ maxConcurrency: 2 })

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  const target = yield* Target.Target
  yield* Effect.forEach(
    Array.from({ length: 30 }, (_, i) => i),
    (i) => client.chat(Pools.ask(`Question ${i}`)),
    { concurrency: "unbounded", discard: true }
  )
  const stats = yield* monitor.stats
  const distribution = Object.fromEntries(stats.keys.map((k) => [k.id, k.requests]))
  const maxInFlight = target.simulator
    ? Object.fromEntries(
        Object.entries((yield* target.simulator.stats).keys).map(([id, k]) => [id, k.maxInFlight])
      )
    : {}
  yield* Console.log("30 requests at once, at most 2 in flight per key:")
  for (const k of stats.keys) {
    yield* Console.log(
      `  ${k.id.padEnd(6)} ${k.requests} requests, at most ${maxInFlight[k.id] ?? "?"} in flight upstream`
    )
  }
  return { distribution, maxInFlight }
}).pipe(Effect.provide(Stack.layer(ConcurrencyLimited.layer().pipe(Layer.provide(RoundRobin.layer())))))

export const main = (options?: Runner.Options) => Runner.main({ simulator, keys, program }, options)
