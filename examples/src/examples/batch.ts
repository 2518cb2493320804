/**
 * Concurrent batch (the seed's `AsyncLoadBalancer.batch_requests`): 100 prompts over every key of
 * the demo pool, 16 at a time, one typed `Either` per prompt in input order (the seed's
 * `gather(return_exceptions=True)`, but typed), through the default stack.
 */
import * as Balancer from "@or-balancer/core/Balancer"
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

export const simulator = Simulator.demoPool(42)

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const balancer = yield* Balancer.Balancer
  const monitor = yield* Monitor.Monitor
  const prompts = Array.from({ length: 100 }, (_, i) => `Question ${i}`)
  const results = yield* balancer.batch(prompts, (p) => client.chat(Pools.ask(p)), { concurrency: 16 })
  const succeeded = results.filter(Either.isRight).length
  const failures: Record<string, number> = {}
  for (const r of results) if (Either.isLeft(r)) failures[r.left._tag] = (failures[r.left._tag] ?? 0) + 1
  const stats = yield* monitor.stats
  yield* Console.log(
    `${results.length} prompts, ${succeeded} answered, failures: ${JSON.stringify(failures)}`
  )
  yield* Console.log(`upstream attempts ${stats.requests} (retries ${stats.retries}), by key:`)
  for (const k of stats.keys) {
    yield* Console.log(
      `  ${k.id.padEnd(13)} ${String(k.requests).padStart(3)} ok ${k.successes} errors ${JSON.stringify(k.errors)}`
    )
  }
  return { results: results.length, succeeded, failures, attempts: stats.requests }
}).pipe(Effect.provide(Stack.layer(Stack.defaultStrategy())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
