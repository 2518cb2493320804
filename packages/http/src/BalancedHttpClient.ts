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
 * - A JSON answer's `usage.cost` is reported to the lease. A streamed (SSE) answer is chosen for
 *   once its headers arrive (a failure before that fails over; after it, no replay) and reported
 *   when its body ends: a success with the final chunk's `usage.cost`, or the typed failure of an
 *   in-band error (`finish_reason: "error"`) or a broken body. The body's bytes reach the caller
 *   unchanged. The lease (a concurrency permit, say) is held until the body is read to the end or
 *   cancelled, as the connection is: read or cancel every streamed body.
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
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { affinityOf } from "./ChatCompletion.js"
import { authorize } from "./internal/client.js"
import * as Errors from "./internal/errors.js"
import * as Sse from "./internal/sse.js"

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
  /** A `text/event-stream` body, still to be read. */
  readonly streamed: boolean
}

/** What a streamed body said about itself, read as it passes: the last `usage.cost`, an in-band error. */
const watchEvents = () => {
  const parser = Sse.makeParser()
  const decoder = new TextDecoder()
  const seen: { cost: number | undefined; error: Errors.ErrorInfo | undefined } = {
    cost: undefined,
    error: undefined
  }
  const inspect = (data: string) => {
    if (data.trim() === "[DONE]") return
    let json: unknown
    try {
      json = JSON.parse(data)
    } catch {
      return
    }
    if (typeof json !== "object" || json === null) return
    const chunk = json as {
      usage?: { cost?: unknown }
      error?: unknown
      choices?: ReadonlyArray<{ finish_reason?: unknown } | null>
    }
    if (typeof chunk.usage?.cost === "number") seen.cost = chunk.usage.cost
    const failed =
      chunk.error !== undefined ||
      (Array.isArray(chunk.choices) && chunk.choices.some((c) => c?.finish_reason === "error"))
    if (failed && seen.error === undefined) {
      seen.error = Errors.errorInfo(chunk.error) ?? {
        code: undefined,
        message: 'the stream ended with finish_reason "error"',
        errorType: undefined
      }
    }
  }
  return {
    seen,
    feed: (bytes: Uint8Array) => {
      for (const event of parser.feed(decoder.decode(bytes, { stream: true }))) inspect(event.data)
    }
  }
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
          return Effect.succeed({ response, cost: undefined, streamed: type.includes("text/event-stream") })
        return Effect.flatMap(Effect.mapError(response.text, Errors.fromHttpClientError), (text) => {
          const again = replay(response, text)
          if (response.status < 400)
            return Effect.succeed({ response: again, cost: costOf(text), streamed: false })
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
      // The lease outlives this call when the answer is a stream: it lives in its own scope,
      // closed when the answer is whole (now for JSON, at the body's end for a stream).
      const balanced = Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Scope.make(), (scope) =>
          restore(
            balancer.runScoped(runRequest, (key) =>
              attempt(request, key, runRequest.model, (error, response) => {
                last = { error, response }
              })
            )
          ).pipe(
            Scope.extend(scope),
            Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)),
            Effect.flatMap((scoped) =>
              scoped.value.streamed
                ? reportAtEnd(scoped, scope, runRequest.model)
                : Effect.as(
                    Effect.zipRight(scoped.succeed(scoped.value.cost), Scope.close(scope, Exit.void)),
                    scoped.value.response
                  )
            )
          )
        )
      )
      return balanced.pipe(
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

  // The streamed body, passed through unchanged, reports the attempt's outcome when it ends.
  const reportAtEnd = (
    scoped: Balancer.Scoped<Answer>,
    scope: Scope.CloseableScope,
    model: string | undefined
  ): Effect.Effect<HttpClientResponse.HttpClientResponse> =>
    Effect.gen(function* () {
      const response = scoped.value.response
      const watch = watchEvents()
      const finish = Effect.suspend(() => {
        const inBand = watch.seen.error
        const outcome =
          inBand === undefined
            ? scoped.succeed(watch.seen.cost)
            : Effect.flatMap(Clock.currentTimeMillis, (now) =>
                scoped.fail(Errors.fromErrorObject(inBand, { now, model }))
              )
        return Effect.zipRight(outcome, Scope.close(scope, Exit.void))
      })
      const body = response.stream.pipe(
        Stream.tap((bytes) => Effect.sync(() => watch.feed(bytes))),
        // A broken body is the attempt's failure (reported first: the lease takes one report).
        Stream.tapError((error) => scoped.fail(Errors.fromHttpClientError(error))),
        // The end, an error, or a caller that stopped reading: what was streamed was served.
        Stream.ensuring(finish)
      )
      const readable = yield* Stream.toReadableStreamEffect(body)
      return HttpClientResponse.fromWeb(
        response.request,
        new globalThis.Response(readable, { status: response.status, headers: response.headers })
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
