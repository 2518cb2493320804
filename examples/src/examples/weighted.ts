/**
 * Weighted (the seed's `WeightedClient`, done as smooth weighted round robin): weights 3, 2, 1
 * give exactly 3:2:1 in every window of six requests, without the seed's bursts of one key.
 */
import * as Balancer from "@or-balancer/core/Balancer"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Weighted from "@or-balancer/strategies/Weighted"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

export const simulator = Pools.healthy(3)
const weights: Record<string, number> = { "key-1": 3, "key-2": 2, "key-3": 1 }
export const keys = (label: string) => ({ weight: weights[label] ?? 1 })

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const balancer = yield* Balancer.Balancer
  const sequence: Array<string> = []
  for (let i = 0; i < 60; i++) {
    const request = Pools.ask(`Question ${i}`)
    // `run` with the single-key primitive, to see which key served each request.
    const id = yield* balancer.run({ model: request.model }, (key) =>
      Effect.as(client.chatWith(key, request), key.id)
    )
    sequence.push(id)
  }
  const counts: Record<string, number> = {}
  for (const id of sequence) counts[id] = (counts[id] ?? 0) + 1
  yield* Console.log(`weights ${JSON.stringify(weights)}`)
  yield* Console.log(`first 12 picks: ${sequence.slice(0, 12).join(" ")}`)
  for (const [id, n] of Object.entries(counts)) {
    yield* Console.log(`  ${id.padEnd(8)} ${Runner.bar(n / sequence.length, 20)} ${n}`)
  }
  return { sequence, counts }
}).pipe(Effect.provide(Stack.layer(Weighted.layer())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, keys, program }, options)
