/**
 * The balanced `HttpClient`: plain `@effect/platform` HttpClient code that knows nothing of keys
 * (no `Authorization` header of its own) gets a key per request, failover and outcome reporting
 * from the layer. The pool has a revoked key: every call still answers 200.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Monitor from "@or-balancer/core/Monitor"
import * as BalancedHttpClient from "@or-balancer/http/BalancedHttpClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"
import * as Target from "../lib/Target.js"

export const simulator: Simulator.Config = {
  seed: 15,
  keys: [
    { label: "revoked", account: "acme", secret: Simulator.simulatedSecret(15, 0), limit: 10, revoked: true },
    { label: "key-a", account: "acme", secret: Simulator.simulatedSecret(15, 1), limit: 10 },
    { label: "key-b", account: "acme", secret: Simulator.simulatedSecret(15, 2), limit: 10 }
  ],
  latency: { kind: "fixed", ms: 2 }
}

const Answer = Schema.Struct({
  model: Schema.String,
  choices: Schema.Array(Schema.Struct({ message: Schema.Struct({ content: Schema.String }) }))
})

/** Ordinary HttpClient code: what an SDK written against `HttpClient` would do. */
const ask = (baseUrl: string, question: string) =>
  Effect.flatMap(HttpClient.HttpClient, (http) =>
    HttpClientRequest.post(`${baseUrl}/chat/completions`).pipe(
      HttpClientRequest.bodyJson({
        model: "openai/gpt-4o-mini",
        max_tokens: 8,
        messages: [{ role: "user", content: question }]
      }),
      Effect.flatMap(http.execute),
      Effect.flatMap(HttpClientResponse.schemaBodyJson(Answer))
    )
  )

export const program = Effect.gen(function* () {
  const { baseUrl } = yield* Target.Target
  const monitor = yield* Monitor.Monitor
  const answers = yield* Effect.forEach(
    Array.from({ length: 12 }, (_, i) => i),
    (i) => ask(baseUrl, `Question ${i}`),
    { concurrency: 3 }
  ).pipe(Effect.provide(BalancedHttpClient.layer({ baseUrl })))
  const stats = yield* monitor.stats
  yield* Console.log(
    `${answers.length} answers via a plain HttpClient, e.g. "${answers[0]?.choices[0]?.message.content}"`
  )
  for (const k of stats.keys)
    yield* Console.log(`  ${k.id.padEnd(8)} ${k.successes} ok, errors ${JSON.stringify(k.errors)}`)
  return {
    answers: answers.length,
    keys: stats.keys.map((k) => ({ id: k.id, successes: k.successes, errors: k.errors }))
  }
}).pipe(Effect.provide(Stack.layer(HealthAware.layer().pipe(Layer.provide(RoundRobin.layer())))))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
