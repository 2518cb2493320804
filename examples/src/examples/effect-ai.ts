/**
 * Effect AI over the balanced client: `@effect/ai-openai`'s `OpenAiLanguageModel` (which calls
 * OpenRouter's `/responses`) and `OpenAiEmbeddingModel` (`/embeddings`), and
 * `@effect/ai-openrouter`'s `OpenRouterLanguageModel` (`/chat/completions`), each given
 * `BalancedHttpClient` as its `HttpClient` and no key of its own. Each call gets a key, failover
 * and outcome reporting; the pool has a revoked key and every call still succeeds. A caller's
 * mistake comes back as OpenRouter's own 400, inside a span as outside.
 *
 * Versions (the last on Effect 3): `@effect/ai` 0.37.0, `@effect/ai-openai` 0.41.0,
 * `@effect/ai-openrouter` 0.10.1.
 */
import * as EmbeddingModel from "@effect/ai/EmbeddingModel"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiEmbeddingModel from "@effect/ai-openai/OpenAiEmbeddingModel"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as OpenRouterClient from "@effect/ai-openrouter/OpenRouterClient"
import * as OpenRouterLanguageModel from "@effect/ai-openrouter/OpenRouterLanguageModel"
import type * as Balancer from "@or-balancer/core/Balancer"
import * as Monitor from "@or-balancer/core/Monitor"
import * as BalancedHttpClient from "@or-balancer/http/BalancedHttpClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"
import * as Target from "../lib/Target.js"

export const simulator: Simulator.Config = {
  seed: 16,
  keys: [
    { label: "revoked", account: "acme", secret: Simulator.simulatedSecret(16, 0), limit: 10, revoked: true },
    { label: "key-a", account: "acme", secret: Simulator.simulatedSecret(16, 1), limit: 10 },
    { label: "key-b", account: "acme", secret: Simulator.simulatedSecret(16, 2), limit: 10 }
  ],
  latency: { kind: "fixed", ms: 2 }
}

export const MODEL = "openai/gpt-4o-mini"
export const EMBEDDING = "openai/text-embedding-3-small"

/** The balanced client under a provider: no `apiKey` (the balancer sets each attempt's key). */
const balanced = (baseUrl: string) => BalancedHttpClient.layer({ baseUrl })

/** `@effect/ai-openai` over the balanced client: `/responses` and `/embeddings`. */
export const layerOpenAi = (
  baseUrl: string
): Layer.Layer<
  LanguageModel.LanguageModel | EmbeddingModel.EmbeddingModel,
  never,
  Stack.Env | Balancer.Balancer
> =>
  Layer.mergeAll(
    OpenAiLanguageModel.layer({ model: MODEL, config: { max_output_tokens: 16 } }),
    OpenAiEmbeddingModel.layerBatched({ model: EMBEDDING, config: { dimensions: 8 } })
  ).pipe(Layer.provide(OpenAiClient.layer({ apiUrl: baseUrl })), Layer.provide(balanced(baseUrl)))

/**
 * `@effect/ai-openrouter` over the balanced client: `/chat/completions`. Its last Effect 3
 * release (0.10.1) declares peers one minor behind (`@effect/ai` 0.35, `@effect/platform` 0.96);
 * it runs unchanged on the pinned line (see the README, "Effect AI").
 */
export const layerOpenRouter = (
  baseUrl: string
): Layer.Layer<LanguageModel.LanguageModel, never, Stack.Env | Balancer.Balancer> =>
  OpenRouterLanguageModel.layer({ model: MODEL, config: { max_tokens: 16 } }).pipe(
    Layer.provide(OpenRouterClient.layer({ apiUrl: baseUrl })),
    Layer.provide(balanced(baseUrl))
  )

/** Provider-neutral Effect AI code: a reply, a streamed reply. No key in sight. */
export const chat = Effect.gen(function* () {
  const reply = yield* LanguageModel.generateText({ prompt: "Say hello" })
  const streamed = yield* LanguageModel.streamText({ prompt: "Count to three" }).pipe(
    Stream.runFold("", (text, part) => (part.type === "text-delta" ? text + part.delta : text))
  )
  return { reply: reply.text, streamed }
})

/** An embedding, and a caller's mistake (a size OpenRouter refuses) surfacing as OpenRouter's 400. */
export const embed = Effect.gen(function* () {
  const model = yield* EmbeddingModel.EmbeddingModel
  const vector = yield* model.embed("hello")
  const refused = yield* model.embed("too wide").pipe(
    OpenAiEmbeddingModel.withConfigOverride({ dimensions: 100_000 }),
    Effect.flip,
    Effect.map((e) => (e._tag === "HttpResponseError" ? `${e._tag} ${e.response.status}` : e._tag))
  )
  return { dimensions: vector.length, refused }
})

export const program = Effect.gen(function* () {
  const { baseUrl } = yield* Target.Target
  const monitor = yield* Monitor.Monitor
  const openAi = yield* Effect.provide(Effect.zip(chat, embed), layerOpenAi(baseUrl))
  const openRouter = yield* Effect.provide(chat, layerOpenRouter(baseUrl))
  yield* Console.log(`@effect/ai-openai     generateText: "${openAi[0].reply}"`)
  yield* Console.log(`@effect/ai-openai     streamText:   "${openAi[0].streamed}"`)
  yield* Console.log(`@effect/ai-openai     embedding:    ${openAi[1].dimensions} dimensions`)
  yield* Console.log(`@effect/ai-openai     a caller's mistake: ${openAi[1].refused}`)
  yield* Console.log(`@effect/ai-openrouter generateText: "${openRouter.reply}"`)
  yield* Console.log(`@effect/ai-openrouter streamText:   "${openRouter.streamed}"`)
  const stats = yield* monitor.stats
  for (const k of stats.keys)
    yield* Console.log(`  ${k.id.padEnd(8)} ${k.successes} ok, errors ${JSON.stringify(k.errors)}`)
  return {
    openAi: { ...openAi[0], ...openAi[1] },
    openRouter,
    keys: stats.keys.map((k) => ({ id: k.id, successes: k.successes, errors: k.errors }))
  }
}).pipe(
  Effect.withSpan("example.effect-ai"),
  Effect.provide(Stack.layer(HealthAware.layer().pipe(Layer.provide(RoundRobin.layer()))))
)

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
