import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChatCompletion from "../ChatCompletion.js"
import type * as OpenRouterClient from "../OpenRouterClient.js"
import * as Answer from "./protocol/answer.js"
import * as Errors from "./protocol/classify.js"
import { scrub } from "./protocol/scrub.js"
import * as Sse from "./protocol/sse.js"

/** The public `OpenRouterClient.Options` (a type-only import: no cycle at run time). */
export type ClientConfig = OpenRouterClient.Options

export const DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"

export const baseUrlFor = (config: ClientConfig, key: Key.Key): string =>
  (key.baseUrl ?? config.baseUrl).replace(/\/+$/, "")

/**
 * The one place a key's secret goes onto the wire. `bearerToken` takes the `Redacted` itself, and
 * platform `Headers` redact `authorization` whenever they are printed.
 */
export const authorize = (request: HttpClientRequest.HttpClientRequest, key: Key.Key) =>
  HttpClientRequest.bearerToken(request, key.secret)

const attribution = (request: HttpClientRequest.HttpClientRequest, config: ClientConfig) => {
  let r = request
  if (config.referer !== undefined) r = HttpClientRequest.setHeader(r, "HTTP-Referer", config.referer)
  if (config.title !== undefined) r = HttpClientRequest.setHeader(r, "X-Title", config.title)
  return r
}

export const withTimeout = <A, R>(
  config: ClientConfig,
  effect: Effect.Effect<A, UpstreamError.UpstreamError, R>
): Effect.Effect<A, UpstreamError.UpstreamError, R> =>
  config.timeout === undefined
    ? effect
    : Effect.timeoutFail(effect, {
        duration: config.timeout,
        onTimeout: () =>
          new UpstreamError.Timeout({ message: `no answer within ${Duration.format(config.timeout!)}` })
      })

const readText = (response: HttpClientResponse.HttpClientResponse) =>
  Effect.mapError(response.text, Errors.fromHttpClientError)

/** Sends with the key, and turns an error status into its typed error (reading the body for it). */
export const send = (
  client: HttpClient.HttpClient,
  config: ClientConfig,
  key: Key.Key,
  request: HttpClientRequest.HttpClientRequest,
  model?: string | undefined
): Effect.Effect<HttpClientResponse.HttpClientResponse, UpstreamError.UpstreamError> =>
  client.execute(authorize(attribution(request, config), key)).pipe(
    Effect.mapError(Errors.fromHttpClientError),
    Effect.flatMap((response) =>
      response.status < 400
        ? Effect.succeed(response)
        : Effect.flatMap(Effect.zip(readText(response), Clock.currentTimeMillis), ([text, now]) =>
            Effect.fail(Errors.fromResponse(response.status, response.headers, text, { now, model }))
          )
    )
  )

const describeParseError = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const text = issues
    .slice(0, 3)
    .map((i) => `${i.path.length === 0 ? "body" : i.path.join(".")}: ${i.message}`)
    .join("; ")
  return scrub(text.length > 300 ? `${text.slice(0, 300)}…` : text)
}

/** Parses and decodes a JSON answer; a 200 carrying an `error` object maps like an error status. */
export const decodeJson = <A, I>(
  schema: Schema.Schema<A, I>,
  what: string,
  status: number,
  headers: Errors.HeadersInput,
  text: string,
  model?: string | undefined
): Effect.Effect<A, UpstreamError.UpstreamError> =>
  Effect.suspend(() => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return Effect.fail(
        new UpstreamError.InvalidResponse({
          message: `${what}: the body is not JSON (${text.trim() === "" ? "empty" : `starts ${JSON.stringify(scrub(text.slice(0, 40)))}`})`,
          status
        })
      )
    }
    if (Answer.isErrorBody(json)) {
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.fail(Errors.fromResponse(status, headers, text, { now, model }))
      )
    }
    return Schema.decodeUnknown(schema)(json).pipe(
      Effect.mapError(
        (e) => new UpstreamError.InvalidResponse({ message: `${what}: ${describeParseError(e)}`, status })
      )
    )
  })

/** Reads the body of a sent request and decodes it with `decodeJson`. */
const readJson = <A, I>(
  schema: Schema.Schema<A, I>,
  what: string,
  response: HttpClientResponse.HttpClientResponse,
  model?: string | undefined
): Effect.Effect<A, UpstreamError.UpstreamError> =>
  Effect.flatMap(readText(response), (text) =>
    decodeJson(schema, what, response.status, response.headers, text, model)
  )

const sendChat = (
  client: HttpClient.HttpClient,
  config: ClientConfig,
  key: Key.Key,
  request: ChatCompletion.Request,
  stream: boolean
) =>
  send(
    client,
    config,
    key,
    HttpClientRequest.post(`${baseUrlFor(config, key)}/chat/completions`).pipe(
      HttpClientRequest.bodyUnsafeJson({ ...request, stream })
    ),
    request.model
  )

export const chat = (
  client: HttpClient.HttpClient,
  config: ClientConfig,
  key: Key.Key,
  request: ChatCompletion.Request
): Effect.Effect<ChatCompletion.Response, UpstreamError.UpstreamError> =>
  withTimeout(
    config,
    Effect.gen(function* () {
      const response = yield* sendChat(client, config, key, request, false)
      return yield* readJson(ChatCompletion.Response, "chat completion", response, request.model)
    })
  )

const decodeChunk = Schema.decodeUnknown(ChatCompletion.Chunk)

/** SSE events to chunks: stops at `[DONE]`; an in-band error, a bad chunk or a cut-off stream fails typed. */
export const chunks = <R>(
  bytes: Stream.Stream<Uint8Array, UpstreamError.UpstreamError, R>,
  model?: string | undefined
): Stream.Stream<ChatCompletion.Chunk, UpstreamError.UpstreamError, R> =>
  Stream.suspend(() => {
    let done = false
    return Sse.events(bytes).pipe(
      Stream.takeWhile((event) => {
        if (event.data.trim() === "[DONE]") {
          done = true
          return false
        }
        return true
      }),
      Stream.mapEffect((event) =>
        Effect.suspend(() => {
          let json: unknown
          try {
            json = JSON.parse(event.data)
          } catch {
            return Effect.fail(
              new UpstreamError.InvalidResponse({
                message: `stream chunk is not JSON (starts ${JSON.stringify(scrub(event.data.slice(0, 40)))})`,
                status: 200
              })
            )
          }
          return decodeChunk(json).pipe(
            Effect.mapError(
              (e) =>
                new UpstreamError.InvalidResponse({
                  message: `stream chunk: ${describeParseError(e)}`,
                  status: 200
                })
            ),
            Effect.flatMap((chunk) => {
              // Read from the parsed event, as every other reader of a stream does.
              const inBand = Answer.chunkError(json)
              return inBand !== undefined
                ? Effect.flatMap(Clock.currentTimeMillis, (now) =>
                    Effect.fail(Errors.fromErrorObject(inBand, { now, model }))
                  )
                : Effect.succeed(chunk)
            })
          )
        })
      ),
      Stream.concat(
        Stream.suspend(() =>
          done
            ? Stream.empty
            : Stream.fail(new UpstreamError.Transport({ message: "the stream ended before [DONE]" }))
        )
      )
    )
  })

/**
 * Opens a stream and waits for its first chunk (keep-alives do not count): until then a failure
 * can still go to another key. The connection lives in the caller's scope.
 */
export const openStream = (
  client: HttpClient.HttpClient,
  config: ClientConfig,
  key: Key.Key,
  request: ChatCompletion.Request
): Effect.Effect<
  Stream.Stream<ChatCompletion.Chunk, UpstreamError.UpstreamError>,
  UpstreamError.UpstreamError,
  Scope.Scope
> =>
  Effect.flatMap(Effect.scope, (outer) =>
    Effect.flatMap(Scope.fork(outer, ExecutionStrategy.sequential), (attemptScope) =>
      withTimeout(
        config,
        Effect.gen(function* () {
          const response = yield* sendChat(client, config, key, request, true)
          const type = response.headers["content-type"] ?? ""
          if (!type.includes("text/event-stream")) {
            // Some errors come as JSON with a 200; anything else is not a stream.
            yield* readJson(ChatCompletion.Chunk, "stream", response, request.model)
            return yield* Effect.fail(
              new UpstreamError.InvalidResponse({
                message: `stream: expected text/event-stream, got ${type === "" ? "no content type" : type}`,
                status: response.status
              })
            )
          }
          const idle = config.streamIdleTimeout
          const body = Stream.mapError(response.stream, Errors.fromHttpClientError)
          // Any bytes (a keep-alive comment too) show the connection is alive.
          const watched =
            idle === undefined
              ? body
              : Stream.timeoutFail(
                  body,
                  () =>
                    new UpstreamError.Timeout({
                      message: `the stream sent nothing for ${Duration.format(idle)}`
                    }),
                  idle
                )
          const all = chunks(watched, request.model)
          // Pull until the first chunk: keep-alives and empty reads do not count as "started".
          const pull = yield* Stream.toPull(all)
          let first = Chunk.empty<ChatCompletion.Chunk>()
          let ended = false
          while (Chunk.isEmpty(first) && !ended) {
            const next = yield* Effect.either(pull)
            if (next._tag === "Right") first = next.right
            else if (Option.isSome(next.left)) return yield* Effect.fail(next.left.value)
            else ended = true
          }
          const rest = ended ? Stream.empty : Stream.repeatEffectChunkOption(pull)
          return Stream.concat(Stream.fromChunk(first), rest)
        }).pipe(Scope.extend(attemptScope))
      ).pipe(Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(attemptScope, exit) : Effect.void)))
    )
  )

const KeyInfoFromResponse = ChatCompletion.KeyResponse

const toKeyInfo = (data: ChatCompletion.KeyResponse["data"]): CreditLookup.KeyInfo => ({
  label: data.label ?? undefined,
  limit: data.limit,
  limitRemaining: data.limit_remaining ?? (data.limit === null ? null : Math.max(0, data.limit - data.usage)),
  limitReset:
    data.limit_reset === "daily" || data.limit_reset === "weekly" || data.limit_reset === "monthly"
      ? data.limit_reset
      : null,
  usage: data.usage,
  isFreeTier: data.is_free_tier
})

/** `GET {base}/key`, falling back to the legacy `/auth/key` when the first answers 404. */
export const keyInfo = (
  client: HttpClient.HttpClient,
  config: ClientConfig,
  key: Key.Key
): Effect.Effect<CreditLookup.KeyInfo, UpstreamError.UpstreamError> => {
  const get = (path: string) =>
    Effect.map(getJson(client, config, key, path, KeyInfoFromResponse), (body) => toKeyInfo(body.data))
  return get("/key").pipe(
    Effect.catchIf(
      (e) => e._tag === "ModelNotFound",
      () => get("/auth/key")
    )
  )
}

const CreditsResponse = Schema.Struct({
  data: Schema.Struct({ total_credits: Schema.Number, total_usage: Schema.Number })
})

/** An account's balance in USD from `GET /credits`, asked with the account's management key. */
export const accountBalance = (
  client: HttpClient.HttpClient,
  config: ClientConfig,
  management: Key.Key
): Effect.Effect<number, UpstreamError.UpstreamError> =>
  Effect.map(
    getJson(client, config, management, "/credits", CreditsResponse),
    (body) => body.data.total_credits - body.data.total_usage
  )

/** `GET {base}{path}` with the key, its JSON body decoded by `schema`, within the client's timeout. */
const getJson = <A, I>(
  client: HttpClient.HttpClient,
  config: ClientConfig,
  key: Key.Key,
  path: string,
  schema: Schema.Schema<A, I>
): Effect.Effect<A, UpstreamError.UpstreamError> =>
  withTimeout(
    config,
    Effect.flatMap(
      send(client, config, key, HttpClientRequest.get(`${baseUrlFor(config, key)}${path}`)),
      (response) => readJson(schema, `GET ${path}`, response)
    )
  )
