/**
 * Streaming chat: `chatStream` fails over to another key until the first chunk arrives (here the
 * first key answers 503 before any byte), then streams with no replay. Keep-alive comments are
 * skipped; the last chunk's `usage.cost` is reported to the strategies.
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

export const simulator: Simulator.Config = {
  seed: 16,
  keys: [
    {
      label: "overloaded",
      account: "acme",
      secret: Simulator.simulatedSecret(16, 0),
      limit: 10,
      faults: { script: ["503"] }
    },
    { label: "steady", account: "acme", secret: Simulator.simulatedSecret(16, 1), limit: 10 }
  ],
  latency: { kind: "fixed", ms: 2 },
  stream: { keepAlives: 2, chunks: 6, chunkIntervalMs: 5 }
}

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  let text = ""
  let chunks = 0
  let cost: number | undefined
  yield* client
    .chatStream({ ...Pools.ask("Tell me a story", "anthropic/claude-sonnet-4", 24), stream: true })
    .pipe(
      Stream.runForEach((chunk) =>
        Effect.gen(function* () {
          chunks++
          const delta = chunk.choices[0]?.delta?.content ?? ""
          text += delta
          if (typeof chunk.usage?.cost === "number") cost = chunk.usage.cost
          if (delta.length > 0) yield* Console.log(`  chunk ${chunks}: ${JSON.stringify(delta)}`)
        })
      )
    )
  const stats = yield* monitor.stats
  yield* Console.log(
    `${chunks} chunks, ${text.length} characters, cost ${cost === undefined ? "?" : Runner.usd(cost)}`
  )
  for (const k of stats.keys)
    yield* Console.log(`  ${k.id.padEnd(10)} ${k.successes} ok, errors ${JSON.stringify(k.errors)}`)
  return {
    text,
    chunks,
    cost,
    keys: stats.keys.map((k) => ({ id: k.id, successes: k.successes, errors: k.errors }))
  }
}).pipe(Effect.provide(Stack.layer(RoundRobin.layer())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
