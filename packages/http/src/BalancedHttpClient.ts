/**
 * A balanced `HttpClient`: wraps any `HttpClient` so that every request it executes gets a key
 * chosen by the `KeySelector` through core's `Balancer`, with outcomes reported and failover on
 * retryable answers. Code written against a plain `HttpClient` (an SDK, `@effect/ai-openrouter`)
 * gets key selection and failover without knowing about keys.
 *
 * - The key's `Authorization` is set in the client's last step, so a caller's own header never wins.
 * - An answer of 400 or more is mapped by {@link ErrorMapping.fromResponse}; a retryable one fails
 *   over to another key. When the balancer gives up, the caller gets the last upstream answer
 *   itself (e.g. the 402), as it would without the wrapper; with no answer at all (transport
 *   failures, no key), a `RequestError` whose `cause` is the typed balancer error.
 * - A JSON answer's `usage.cost` is reported to the lease. A streamed (SSE) answer counts as served
 *   when its headers arrive; its cost is not read (use `OpenRouterClient.chatStream` for that).
 * - The request's JSON body gives the `model` and affinity (`session_id`, `prompt_cache_key`, `user`).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Balancer from "@or-balancer/core/Balancer"
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { affinityOf } from "./ChatCompletion.js"
import { authorize } from "./internal/client.js"
import * as Errors from "./internal/errors.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /**
   * The base URL callers address (e.g. `https://openrouter.ai/api/v1`). When a key has its own
   * `baseUrl`, requests under this prefix are sent under the key's instead.
   */
  readonly baseUrl?: string | undefined
  /** Per attempt, until the answer's headers (and a JSON body) arrived. */
  readonly timeout?: Duration.DurationInput | undefined
}

const decoder = new TextDecoder()

/** The model and affinity from a JSON body, if the request has one. */
const runRequestOf = (request: HttpClientRequest.HttpClientRequest): Balancer.RunRequest => {
  const body = request.body
  if (body._tag !== "Uint8Array" || !body.contentType.includes("json")) return {}
  try {
    const json: unknown = JSON.parse(decoder.decode(body.body))
    if (typeof json !== "object" || json === null) return {}
    const record = json as Record<string, unknown>
    return {
      model: typeof record.model === "string" ? record.model : undefined,
      affinity: affinityOf(record)
    }
  } catch {
    return {}
  }
}

const costOf = (text: string): number | undefined => {
  try {
    const json = JSON.parse(text) as { usage?: { cost?: unknown } } | null
    const cost = json?.usage?.cost
    return typeof cost === "number" ? cost : undefined
  } catch {
    return undefined
  }
}

/** A response whose body was read, rebuilt so that the caller can read it again any way it likes. */
const replay = (response: HttpClientResponse.HttpClientResponse, text: string) =>
  HttpClientResponse.fromWeb(
    response.request,
    new globalThis.Response(response.status === 204 || response.status === 304 ? null : text, {
      status: response.status,
      headers: response.headers
    })
  )

interface Answer {
  readonly response: HttpClientResponse.HttpClientResponse
  readonly cost: number | undefined
}

/**
 * Wraps `client` so that every request is balanced by `balancer`.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const wrap = (
  client: HttpClient.HttpClient,
  balancer: Balancer.Service,
  options: Options = {}
): HttpClient.HttpClient => {
  const base = options.baseUrl?.replace(/\/+$/, "")
  const timeout = options.timeout === undefined ? undefined : Duration.decode(options.timeout)

  const rebase = (request: HttpClientRequest.HttpClientRequest, key: Key.Key) => {
    if (base === undefined || key.baseUrl === undefined || !request.url.startsWith(base)) return request
    return HttpClientRequest.setUrl(request, key.baseUrl.replace(/\/+$/, "") + request.url.slice(base.length))
  }

  const attempt = (
    request: HttpClientRequest.HttpClientRequest,
    key: Key.Key,
    model: string | undefined,
    onError: (error: UpstreamError.UpstreamError, response: HttpClientResponse.HttpClientResponse) => void
  ): Effect.Effect<Answer, UpstreamError.UpstreamError> => {
    const run = client.execute(authorize(rebase(request, key), key)).pipe(
      Effect.mapError(Errors.fromHttpClientError),
      Effect.flatMap((response): Effect.Effect<Answer, UpstreamError.UpstreamError> => {
        const type = response.headers["content-type"] ?? ""
        if (response.status < 400 && !type.includes("json"))
          return Effect.succeed({ response, cost: undefined })
        return Effect.flatMap(Effect.mapError(response.text, Errors.fromHttpClientError), (text) => {
          const again = replay(response, text)
          if (response.status < 400) return Effect.succeed({ response: again, cost: costOf(text) })
          return Effect.flatMap(Clock.currentTimeMillis, (now) => {
            const error = Errors.fromResponse(response.status, response.headers, text, { now, model })
            onError(error, again)
            return Effect.fail(error)
          })
        })
      })
    )
    return timeout === undefined
      ? run
      : Effect.timeoutFail(run, {
          duration: timeout,
          onTimeout: () =>
            new UpstreamError.Timeout({ message: `no answer within ${Duration.format(timeout)}` })
        })
  }

  const execute = (
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> =>
    Effect.suspend(() => {
      const runRequest = runRequestOf(request)
      // The last upstream answer and the error it mapped to: handed back as-is if the balancer gives up on it.
      let last:
        { error: UpstreamError.UpstreamError; response: HttpClientResponse.HttpClientResponse } | undefined
      return balancer
        .run(
          runRequest,
          (key) =>
            attempt(request, key, runRequest.model, (error, response) => {
              last = { error, response }
            }),
          { costOf: (answer) => answer.cost }
        )
        .pipe(
          Effect.map((answer) => answer.response),
          Effect.catchAll((error) => {
            const final =
              error._tag === "AllAttemptsFailed" ? error.attempts[error.attempts.length - 1]?.error : error
            if (last !== undefined && final === last.error) return Effect.succeed(last.response)
            return Effect.fail(
              new HttpClientError.RequestError({
                request,
                reason: "Transport",
                cause: error,
                description: error.message
              })
            )
          })
        )
    })

  return HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
    (request) => Effect.flatMap(request, execute),
    Effect.succeed
  )
}

/**
 * Replaces the `HttpClient` in context with a balanced one over it.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<HttpClient.HttpClient, never, HttpClient.HttpClient | Balancer.Balancer> =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      const balancer = yield* Balancer.Balancer
      return wrap(client, balancer, options)
    })
  )
