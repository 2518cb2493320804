/**
 * Effect AI over `BalancedHttpClient`, against the simulator: `@effect/ai-openai`'s language model
 * (`/responses`, plain and streamed) and embeddings (`/embeddings`), and `@effect/ai-openrouter`'s
 * language model (`/chat/completions`). A revoked key in the pool is failed over; a caller's
 * mistake, and every key refused, come back inside `Effect.withSpan` as OpenRouter's own answer
 * (`HttpResponseError` with its status and body), never as a "Transport" `RequestError`.
 */
import * as EmbeddingModel from "@effect/ai/EmbeddingModel"
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import * as OpenAiEmbeddingModel from "@effect/ai-openai/OpenAiEmbeddingModel"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as OpenRouterLanguageModel from "@effect/ai-openrouter/OpenRouterLanguageModel"
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Monitor from "@or-balancer/core/Monitor"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as EffectAi from "../src/examples/effect-ai.js"
import * as Stack from "../src/lib/Stack.js"
import * as Target from "../src/lib/Target.js"

const SEED = 41

/** A pool of `revoked` revoked keys then `good` working ones, round robin from the first revoked. */
const withPool = <A, E, R>(
  counts: { readonly revoked: number; readonly good: number },
  program: (baseUrl: string, sim: Simulator.Handle) => Effect.Effect<A, E, R>
) => {
  const keys: Array<Simulator.KeyConfig> = []
  for (let i = 0; i < counts.revoked + counts.good; i++)
    keys.push({
      label: i < counts.revoked ? `revoked-${i}` : `good-${i}`,
      secret: Simulator.simulatedSecret(SEED, i),
      limit: 10,
      revoked: i < counts.revoked
    })
  return Effect.gen(function* () {
    const { baseUrl, simulator } = yield* Target.Target
    return yield* program(baseUrl, simulator!)
  }).pipe(
    Effect.provide(Stack.layer(RoundRobin.layer())),
    Effect.provide(Target.layerSimulator({ seed: SEED, keys, latency: { kind: "fixed", ms: 1 } }))
  )
}

const text = <E, R>(stream: Stream.Stream<Response.StreamPart<{}>, E, R>) =>
  Stream.runFold(stream, "", (acc, part) => (part.type === "text-delta" ? acc + part.delta : acc))

const routesOf = (sim: Simulator.Handle) =>
  Effect.map(sim.recentRequests, (seen) => seen.map((r) => `${r.route} ${r.key}`))

describe("Effect AI over BalancedHttpClient", () => {
  it.live(
    "@effect/ai-openai: generateText and streamText on /responses, embeddings on /embeddings, past a revoked key",
    () =>
      withPool({ revoked: 1, good: 2 }, (baseUrl, sim) =>
        Effect.gen(function* () {
          const reply = yield* LanguageModel.generateText({ prompt: "Say hello" })
          assert.match(reply.text, /sim/)
          const streamed = yield* text(LanguageModel.streamText({ prompt: "Count" }))
          assert.match(streamed, /sim/)
          const embedder = yield* EmbeddingModel.EmbeddingModel
          const vector = yield* embedder.embed("hello")
          assert.strictEqual(vector.length, 8)
          // The revoked key was tried first and failed over from; every call still succeeded.
          const seen = yield* routesOf(sim)
          assert.include(seen, "responses revoked-0")
          assert.include(seen, "embeddings good-1")
          assert.includeMembers(
            seen.filter((r) => r.startsWith("responses")),
            ["responses good-1", "responses good-2"]
          )
          const stats = yield* (yield* Monitor.Monitor).stats
          const revoked = stats.keys.find((k) => k.id === "revoked-0")!
          assert.isAtLeast(revoked.errors.Unauthorized ?? 0, 1)
          assert.strictEqual(revoked.successes, 0)
          assert.strictEqual(stats.successes, 3)
        }).pipe(Effect.provide(EffectAi.layerOpenAi(baseUrl)), Effect.withSpan("test.openai"))
      )
  )

  it.live(
    "@effect/ai-openai: a caller's 400 and 'every key 401' are OpenRouter's answers inside a span",
    () =>
      Effect.gen(function* () {
        const refused = yield* withPool({ revoked: 0, good: 2 }, (baseUrl) =>
          Effect.gen(function* () {
            const embedder = yield* EmbeddingModel.EmbeddingModel
            const language = yield* Effect.flip(
              LanguageModel.generateText({ prompt: "x" }).pipe(
                OpenAiLanguageModel.withConfigOverride({ max_output_tokens: -5 })
              )
            )
            const embedding = yield* Effect.flip(
              embedder.embed("x").pipe(OpenAiEmbeddingModel.withConfigOverride({ dimensions: 100_000 }))
            )
            return { language, embedding }
          }).pipe(Effect.provide(EffectAi.layerOpenAi(baseUrl)), Effect.withSpan("test.caller-error"))
        )
        for (const e of [refused.language, refused.embedding]) {
          assert.strictEqual(e._tag, "HttpResponseError")
          if (e._tag !== "HttpResponseError") continue
          assert.strictEqual(e.response.status, 400)
          assert.notInclude(e.message, "Transport")
        }
        if (refused.embedding._tag === "HttpResponseError")
          assert.include(refused.embedding.body, '\\"dimensions\\" must be an integer')

        const unauthorized = yield* withPool({ revoked: 2, good: 0 }, (baseUrl) =>
          Effect.flip(LanguageModel.generateText({ prompt: "x" })).pipe(
            Effect.provide(EffectAi.layerOpenAi(baseUrl)),
            Effect.withSpan("test.all-revoked")
          )
        )
        assert.strictEqual(unauthorized._tag, "HttpResponseError")
        if (unauthorized._tag === "HttpResponseError") assert.strictEqual(unauthorized.response.status, 401)
      })
  )

  it.live(
    "@effect/ai-openrouter: generateText and streamText past a revoked key; a caller's 400 inside a span",
    () =>
      withPool({ revoked: 1, good: 2 }, (baseUrl, sim) =>
        Effect.gen(function* () {
          assert.match((yield* LanguageModel.generateText({ prompt: "Say hello" })).text, /sim/)
          assert.match(yield* text(LanguageModel.streamText({ prompt: "Count" })), /sim/)
          const seen = yield* routesOf(sim)
          assert.include(seen, "chat revoked-0")
          const refused = yield* Effect.flip(
            LanguageModel.generateText({ prompt: "x" }).pipe(
              OpenRouterLanguageModel.withConfigOverride({ max_tokens: -5 })
            )
          )
          assert.strictEqual(refused._tag, "HttpResponseError")
          if (refused._tag === "HttpResponseError") assert.strictEqual(refused.response.status, 400)
        }).pipe(Effect.provide(EffectAi.layerOpenRouter(baseUrl)), Effect.withSpan("test.openrouter"))
      )
  )

  it.live(
    "with OpenTelemetry installed: the balancer's request and attempt spans under the caller's, the HTTP client's under each attempt, no secret",
    () => {
      const exporter = new InMemorySpanExporter()
      const otel = NodeSdk.layer(() => ({
        resource: { serviceName: "effect-ai-test" },
        spanProcessor: new SimpleSpanProcessor(exporter)
      }))
      return withPool({ revoked: 1, good: 1 }, (baseUrl, sim) =>
        Effect.gen(function* () {
          yield* LanguageModel.generateText({ prompt: "Say hello" }).pipe(Effect.withSpan("caller"))
          const spans = exporter.getFinishedSpans()
          const byName = (name: string) => spans.filter((s) => s.name === name)
          const caller = byName("caller")[0]!
          const request = byName("or_balancer.request")[0]!
          // Under Effect AI's own span, itself under the caller's: one trace.
          const generate = byName("LanguageModel.generateText")[0]!
          assert.strictEqual(generate.parentSpanContext?.spanId, caller.spanContext().spanId)
          assert.strictEqual(request.parentSpanContext?.spanId, generate.spanContext().spanId)
          assert.strictEqual(request.spanContext().traceId, caller.spanContext().traceId)
          const attempts = byName("or_balancer.attempt")
          assert.deepStrictEqual(
            attempts.map((a) => [a.attributes["or_balancer.key"], a.attributes["or_balancer.outcome"]]),
            [
              ["revoked-0", "failure"],
              ["good-1", "success"]
            ]
          )
          assert.strictEqual(attempts[0]!.attributes["or_balancer.error"], "Unauthorized")
          assert.strictEqual(attempts[0]!.attributes["or_balancer.retry"], "eject")
          for (const a of attempts)
            assert.strictEqual(a.parentSpanContext?.spanId, request.spanContext().spanId)
          // @effect/platform's client span per attempt, a child of it; its context went upstream.
          const calls = spans.filter((s) => s.name.startsWith("http.client"))
          assert.deepStrictEqual(
            calls.map((c) => c.parentSpanContext?.spanId),
            attempts.map((a) => a.spanContext().spanId)
          )
          const seen = (yield* sim.recentRequests).at(-1)!
          assert.include(seen.headers.traceparent ?? "", calls[1]!.spanContext().spanId)
          const secrets = sim.keys.map((k) => Redacted.value(k.secret))
          for (const s of spans.filter((s) => s.name.startsWith("or_balancer."))) {
            const text = JSON.stringify([s.attributes, s.status, s.events])
            for (const secret of secrets) assert.notInclude(text, secret)
          }
        }).pipe(Effect.provide(EffectAi.layerOpenAi(baseUrl)), Effect.provide(otel))
      )
    }
  )
})
