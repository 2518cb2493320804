/**
 * By model (the seed's `ModelBalancer`): `anthropic/*` on two keys, `openai/*` on one, everything
 * else on the fourth, each route with its own round robin. A model no route matches would be a
 * clear `NoKeyAvailable` with reason `model`, not the seed's silent default.
 */
import * as Balancer from "@or-balancer/core/Balancer"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as ByModel from "@or-balancer/strategies/ByModel"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

export const simulator = Pools.healthy(4)

const routes = [
  { pattern: "anthropic/*", keys: ["key-1", "key-2"], strategy: RoundRobin.layer({ name: "anthropic" }) },
  { pattern: "openai/*", keys: ["key-3"] },
  { pattern: "*", keys: ["key-4"] }
] as const

const models = [
  "anthropic/claude-sonnet-4",
  "openai/gpt-4o-mini",
  "google/gemini-2.0-flash-001",
  "meta-llama/llama-3.1-8b-instruct"
]

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const balancer = yield* Balancer.Balancer
  const served: Record<string, Array<string>> = {}
  for (let i = 0; i < 16; i++) {
    const model = models[i % models.length]!
    const request = Pools.ask(`Question ${i}`, model)
    const id = yield* balancer.run({ model }, (key) => Effect.as(client.chatWith(key, request), key.id))
    const list = (served[model] ??= [])
    if (!list.includes(id)) list.push(id)
  }
  yield* Console.log("routes: anthropic/* -> key-1, key-2; openai/* -> key-3; * -> key-4")
  for (const [model, ids] of Object.entries(served))
    yield* Console.log(`  ${model.padEnd(34)} served by ${ids.join(", ")}`)
  return { served }
}).pipe(Effect.provide(Stack.layer(ByModel.layer(routes).pipe(Layer.provide(RoundRobin.layer())))))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
