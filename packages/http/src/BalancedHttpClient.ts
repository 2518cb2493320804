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
 * - A JSON answer's `usage.cost` is reported to the lease. A 2xx to a request with a JSON body that
 *   is not JSON (an HTML page, a body cut short) or carries an error object is the key's failure.
 *   Answers are read through `Protocol`, as the client and the gateway read them. A streamed (SSE) answer is chosen for
 *   once its headers arrive (a failure before that fails over; after it, no replay) and reported
 *   when its body ends: a success with the final chunk's `usage.cost`, or the typed failure of an
 *   in-band error (a top-level `error` field or `finish_reason: "error"`) or a broken body. The body's bytes reach the caller
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
import { authorize } from "./internal/client.js"
import { affinityOf } from "./internal/protocol/affinity.js"
import * as Protocol from "./internal/protocol/answer.js"
import * as Errors from "./internal/protocol/classify.js"

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

/**
 * The model and affinity from a JSON body, if the request has one. A request with a JSON body is
 * an API call (a chat, an embedding): its 2xx answer must be JSON or an event stream.
 */
const runRequestOf = (
  request: HttpClientRequest.HttpClientRequest
): { readonly run: Balancer.RunRequest; readonly api: boolean } => {
  const body = request.body
  if (body._tag !== "Uint8Array" || !body.contentType.includes("json")) return { run: {}, api: false }
  try {
    const json: unknown = JSON.parse(decoder.decode(body.body))
    if (typeof json !== "object" || json === null) return { run: {}, api: true }
    const record = json as Record<string, unknown>
    return {
      run: {
        model: typeof record.model === "string" ? record.model : undefined,
        affinity: affinityOf(record)
      },
      api: true
    }
  } catch {
    return { run: {}, api: true }
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
    call: { readonly run: Balancer.RunRequest; readonly api: boolean },
    onError: (error: UpstreamError.UpstreamError, response: HttpClientResponse.HttpClientResponse) => void
  ): Effect.Effect<Answer, UpstreamError.UpstreamError> => {
    const model = call.run.model
    // An upstream answer that is the key's failure: handed back as-is if the balancer gives up on it.
    const failWith = (
      error: UpstreamError.UpstreamError,
      response: HttpClientResponse.HttpClientResponse
    ) => {
      onError(error, response)
      return Effect.fail(error)
    }
    const run = client.execute(authorize(rebase(request, key), key)).pipe(
      Effect.mapError(Errors.fromHttpClientError),
      Effect.flatMap((response): Effect.Effect<Answer, UpstreamError.UpstreamError> => {
        const type = response.headers["content-type"]
        const kind = Protocol.kindOf(type)
        if (response.status < 400 && kind === "sse")
          return Effect.succeed({ response, cost: undefined, streamed: true })
        if (response.status < 400 && kind === "other") {
          if (!call.api) return Effect.succeed({ response, cost: undefined, streamed: false })
          return Effect.flatMap(Effect.mapError(response.text, Errors.fromHttpClientError), (text) =>
            failWith(Protocol.unexpectedKind(response.status, type), replay(response, text))
          )
        }
        return Effect.flatMap(Effect.mapError(response.text, Errors.fromHttpClientError), (text) => {
          const again = replay(response, text)
          return Effect.flatMap(Clock.currentTimeMillis, (now) => {
            if (response.status >= 400)
              return failWith(
                Errors.fromResponse(response.status, response.headers, text, { now, model }),
                again
              )
            const verdict = Protocol.jsonVerdict(response.status, response.headers, text, { now, model })
            return verdict._tag === "Success"
              ? Effect.succeed({ response: again, cost: verdict.cost, streamed: false })
              : failWith(verdict.error, again)
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
      const call = runRequestOf(request)
      const runRequest = call.run
      // The latest attempt's upstream answer, when that attempt failed on one (reset as each attempt
      // starts): handed back as-is if the balancer gives up, as its final error is that attempt's.
      // Not matched by identity with the error: Effect 3 wraps an error that crosses a span in a
      // Proxy, and under `Effect.withSpan` a 400 once became a "Transport" RequestError that way.
      let last: HttpClientResponse.HttpClientResponse | undefined
      // The lease outlives this call when the answer is a stream: it lives in its own scope,
      // closed when the answer is whole (now for JSON, at the body's end for a stream).
      const balanced = Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Scope.make(), (scope) =>
          restore(
            balancer.runScoped(runRequest, (key) =>
              Effect.suspend(() => {
                last = undefined
                return attempt(request, key, call, (_, response) => {
                  last = response
                })
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
          // No key at all is no answer; any other end is the latest attempt's failure.
          if (last !== undefined && error._tag !== "NoKeyAvailable") return Effect.succeed(last)
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
      const watch = Protocol.makeStreamWatch()
      const finish = Effect.suspend(() => {
        const inBand = watch.error()
        const outcome =
          inBand === undefined
            ? scoped.succeed(watch.cost())
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
