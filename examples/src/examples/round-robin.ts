/**
 * Round robin (the seed's `RoundRobinClient`): each request takes the next key in turn.
 * Shows the distribution of 30 requests over three keys: exactly 10 each.
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

export const simulator = Pools.healthy(3)

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  for (let i = 0; i < 30; i++) {
    const answer = yield* client.chat(Pools.ask(`Question ${i}`))
    if (i < 3) yield* Console.log(`request ${i}: ${answer.choices[0]?.message.content ?? ""}`)
  }
  const stats = yield* monitor.stats
  const distribution = Object.fromEntries(stats.keys.map((k) => [k.id, k.requests]))
  yield* Console.log("distribution of 30 requests:")
  for (const k of stats.keys)
    yield* Console.log(`  ${k.id.padEnd(8)} ${Runner.bar(k.share, 20)} ${k.requests}`)
  return { distribution }
}).pipe(Effect.provide(Stack.layer(RoundRobin.layer())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
