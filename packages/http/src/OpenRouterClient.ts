/**
 * A typed OpenRouter client over `@effect/platform`'s `HttpClient` (the program provides
 * `NodeHttpClient` or `FetchHttpClient`).
 *
 * `chat` and `chatStream` go through core's `Balancer`: a key is chosen per attempt, each
 * attempt's outcome (latency, `usage.cost`) is reported to the strategies, and a failure before
 * the first streamed chunk fails over to another key. Once a chunk has been handed to the caller
 * there is no replay: the stream fails with the typed error and the lease is told.
 *
 * `chatWith` / `chatStreamWith` / `keyInfo` are the single-key primitives underneath.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Balancer from "@or-balancer/core/Balancer"
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChatCompletion from "./ChatCompletion.js"
import * as internal from "./internal/client.js"

/**
 * OpenRouter's public API.
 *
 * @since 0.1.0
 * @category Constants
 */
export const DEFAULT_BASE_URL: string = internal.DEFAULT_BASE_URL

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** Default `https://openrouter.ai/api/v1`; a key's own `baseUrl` overrides it. */
  readonly baseUrl: string
  /** Sent as `HTTP-Referer` (OpenRouter's app attribution). */
  readonly referer?: string | undefined
  /** Sent as `X-Title`. */
  readonly title?: string | undefined
  /** Per attempt: a whole answer, or a stream's first chunk. None by default. */
  readonly timeout?: Duration.Duration | undefined
  /**
   * A stream that sends no bytes for this long (keep-alive comments count) fails with `Timeout`:
   * before its first chunk it fails over, after it the stream fails. None by default.
   */
  readonly streamIdleTimeout?: Duration.Duration | undefined
}

/**
 * The client's settings. A `Context.Reference`: without a layer the defaults apply.
 *
 * @since 0.1.0
 * @category Context
 */
export class ClientConfig extends Context.Reference<ClientConfig>()(
  "@or-balancer/http/OpenRouterClient/ClientConfig",
  {
    defaultValue: (): Options => ({ baseUrl: internal.DEFAULT_BASE_URL })
  }
) {}

/**
 * @since 0.1.0
 * @category Layers
 */
export const layerClientConfig = (options: {
  readonly baseUrl?: string | undefined
  readonly referer?: string | undefined
  readonly title?: string | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly streamIdleTimeout?: Duration.DurationInput | undefined
}): Layer.Layer<ClientConfig> =>
  Layer.succeed(ClientConfig, {
    baseUrl: options.baseUrl ?? internal.DEFAULT_BASE_URL,
    referer: options.referer,
    title: options.title,
    timeout: options.timeout === undefined ? undefined : Duration.decode(options.timeout),
    streamIdleTimeout:
      options.streamIdleTimeout === undefined ? undefined : Duration.decode(options.streamIdleTimeout)
  })

/**
 * Reads `OPENROUTER_BASE_URL`, `OPENROUTER_REFERER`, `OPENROUTER_TITLE`, `OPENROUTER_TIMEOUT`
 * and `OPENROUTER_STREAM_IDLE_TIMEOUT` (durations such as `60 seconds`), all optional.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerClientConfigFromEnv: Layer.Layer<ClientConfig, ConfigError.ConfigError> =
  Layer.unwrapEffect(
    Effect.map(
      Config.all({
        baseUrl: Config.string("OPENROUTER_BASE_URL").pipe(Config.withDefault(internal.DEFAULT_BASE_URL)),
        referer: Config.option(Config.string("OPENROUTER_REFERER")),
        title: Config.option(Config.string("OPENROUTER_TITLE")),
        timeout: Config.option(Config.duration("OPENROUTER_TIMEOUT")),
        streamIdleTimeout: Config.option(Config.duration("OPENROUTER_STREAM_IDLE_TIMEOUT"))
      }),
      (c) =>
        layerClientConfig({
          baseUrl: c.baseUrl,
          referer: c.referer._tag === "Some" ? c.referer.value : undefined,
          title: c.title._tag === "Some" ? c.title.value : undefined,
          timeout: c.timeout._tag === "Some" ? c.timeout.value : undefined,
          streamIdleTimeout: c.streamIdleTimeout._tag === "Some" ? c.streamIdleTimeout.value : undefined
        })
    )
  )

/**
 * What a balanced call can fail with: the upstream's own verdict on a request that no key would
 * fix (`BadRequest`, `ModelNotFound`), every attempt failing, or no key at all.
 *
 * @since 0.1.0
 * @category Errors
 */
export type ChatError = UpstreamError.UpstreamError | Balancer.AllAttemptsFailed | KeySelector.NoKeyAvailable

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** One answer, balanced across the pool. */
  readonly chat: (request: ChatCompletion.Request) => Effect.Effect<ChatCompletion.Response, ChatError>
  /** A stream of chunks, balanced: failover until the first chunk, no replay after it. */
  readonly chatStream: (request: ChatCompletion.Request) => Stream.Stream<ChatCompletion.Chunk, ChatError>
  /** One attempt with one key. */
  readonly chatWith: (
    key: Key.Key,
    request: ChatCompletion.Request
  ) => Effect.Effect<ChatCompletion.Response, UpstreamError.UpstreamError>
  /** One streamed attempt with one key: succeeds once the first chunk arrived; the connection lives in the scope. */
  readonly chatStreamWith: (
    key: Key.Key,
    request: ChatCompletion.Request
  ) => Effect.Effect<
    Stream.Stream<ChatCompletion.Chunk, UpstreamError.UpstreamError>,
    UpstreamError.UpstreamError,
    Scope.Scope
  >
  /** `GET /key` (legacy `/auth/key` on 404): the key's credit, and a free health probe. */
  readonly keyInfo: (key: Key.Key) => Effect.Effect<CreditLookup.KeyInfo, UpstreamError.UpstreamError>
}

/**
 * @since 0.1.0
 * @category Context
 */
export class OpenRouterClient extends Context.Tag("@or-balancer/http/OpenRouterClient")<
  OpenRouterClient,
  Service
>() {}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<Service, never, HttpClient.HttpClient | Balancer.Balancer> = Effect.gen(
  function* () {
    const client = yield* HttpClient.HttpClient
    const balancer = yield* Balancer.Balancer
    const config = yield* ClientConfig

    const chatWith: Service["chatWith"] = (key, request) => internal.chat(client, config, key, request)
    const chatStreamWith: Service["chatStreamWith"] = (key, request) =>
      internal.openStream(client, config, key, request)

    const runRequest = (request: ChatCompletion.Request): Balancer.RunRequest => ({
      model: request.model,
      affinity: ChatCompletion.affinityOf(request)
    })

    const chat: Service["chat"] = (request) =>
      balancer.run(runRequest(request), (key) => chatWith(key, request), {
        costOf: (response) => response.usage?.cost ?? undefined
      })

    const chatStream: Service["chatStream"] = (request) =>
      Stream.unwrapScoped(
        Effect.map(
          balancer.runScoped(runRequest(request), (key) => chatStreamWith(key, request)),
          (scoped) => {
            let cost: number | undefined
            return scoped.value.pipe(
              Stream.tap((chunk) => {
                if (typeof chunk.usage?.cost === "number") cost = chunk.usage.cost
                return Effect.void
              }),
              Stream.tapError((error) => scoped.fail(error)),
              // Reached on the end, an error (already reported: the lease ignores a second report)
              // and a caller that stopped early: what was streamed was served.
              Stream.ensuring(Effect.suspend(() => scoped.succeed(cost)))
            )
          }
        )
      )

    return OpenRouterClient.of({
      chat,
      chatStream,
      chatWith,
      chatStreamWith,
      keyInfo: (key) => internal.keyInfo(client, config, key)
    })
  }
)

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<OpenRouterClient, never, HttpClient.HttpClient | Balancer.Balancer> =
  Layer.effect(OpenRouterClient, make)
