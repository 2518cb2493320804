/**
 * The routes that are not a balanced request: the model list (public on OpenRouter: sent with no
 * key, so a listing never changes a key's health, as it once healed dead keys) and a generation's
 * lookup (sent with the key that made it when known, else the healthiest; its answer is no
 * verdict on the key either). Only chat-like answers and deliberate probes judge a key. Every
 * header and byte passes `Protocol`'s scrubber, and a key's problem is never forwarded.
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Protocol from "@or-balancer/http/Protocol"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import type * as http from "node:http"
import type * as Undici from "undici"
import type { Live } from "./forward.js"
import * as Generations from "./generations.js"
import * as Log from "./log.js"
import { copyHeaders, errorBody, header1, openAiError } from "./respond.js"
import type { EngineState } from "./state.js"
import { timeoutCode, type Upstream, upstreamFor } from "./upstream.js"

/** One call upstream: its answer's head, or why there is none. */
type Head =
  | { readonly _tag: "Head"; readonly response: Undici.Dispatcher.ResponseData }
  | { readonly _tag: "Broken"; readonly message: string }
  /** A path or query undici will not send (the caller's: a 400, tried with no key). */
  | { readonly _tag: "BadPath" }

const headOfError = (e: unknown): Head => {
  const code = (e as { code?: unknown })?.code
  const message = e instanceof Error ? e.message : String(e)
  if (code === "UND_ERR_INVALID_ARG" && message === "invalid request path") return { _tag: "BadPath" }
  return { _tag: "Broken", message: timeoutCode(e) !== undefined ? "upstream timed out" : message }
}

const call = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  path: string,
  key: Key.Key | undefined,
  done: (head: Head) => void
): void => {
  const headers: Record<string, string> = { accept: header1(req.headers.accept) ?? "application/json" }
  if (key !== undefined) headers.authorization = `Bearer ${Redacted.value(key.secret)}`
  // The request id and the caller's trace context, as on balanced routes (log.ts).
  headers["x-request-id"] = live.id
  const traceparent = header1(req.headers.traceparent)
  if (traceparent !== undefined) headers.traceparent = traceparent
  const stop = new AbortController()
  live.hooks = { cancel: () => stop.abort() }
  let u: Upstream
  try {
    u = upstreamFor(engine, key?.baseUrl ?? engine.config.baseUrl)
  } catch (e) {
    return done(headOfError(e))
  }
  const { headersMs, bodyIdleMs } = engine.config.deadlines
  u.dispatcher
    .request({
      method: "GET",
      path: u.prefix + path,
      headers,
      signal: stop.signal,
      headersTimeout: headersMs,
      bodyTimeout: bodyIdleMs
    })
    .then(
      (response) => {
        live.hooks = { cancel: () => response.body.destroy() }
        done({ _tag: "Head", response })
      },
      (e) => done(headOfError(e))
    )
}

/** Pipes an answer to the client, scrubbed; a break after the head cuts the client's answer too. */
const pipe = (res: http.ServerResponse, response: Undici.Dispatcher.ResponseData): void => {
  const body = response.body
  if (res.destroyed) return void body.destroy()
  const headers = copyHeaders(response.headers)
  delete headers["content-length"]
  const id = Log.idOf(res)
  if (id !== undefined) headers["x-request-id"] = id
  try {
    res.writeHead(response.statusCode, headers)
  } catch {
    body.destroy()
    return openAiError(
      res,
      502,
      "the upstream answer had a header that cannot be passed on",
      "server_error",
      null
    )
  }
  const scrubber = Protocol.makeStreamScrubber()
  body.on("data", (chunk: Buffer) => {
    const out = scrubber.push(chunk)
    if (out.length > 0 && !res.write(out)) body.pause()
  })
  res.on("drain", () => body.resume())
  body.once("end", () => {
    const rest = scrubber.end()
    res.end(rest.length > 0 ? rest : undefined)
  })
  body.once("error", () => res.destroy())
}

const broken = (res: http.ServerResponse, message: string) =>
  openAiError(res, 502, Protocol.scrub(`the upstream could not be reached: ${message}`), "server_error", null)

const badPath = (res: http.ServerResponse) =>
  openAiError(
    res,
    400,
    "the path or query has characters that cannot be sent on",
    "invalid_request_error",
    null
  )

/** `GET /models` or `/models/{author}/{slug}` (with its query), with no key. */
export const forwardModels = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string
): void =>
  call(engine, live, req, path, undefined, (head) =>
    head._tag === "Head"
      ? pipe(res, head.response)
      : head._tag === "BadPath"
        ? badPath(res)
        : broken(res, head.message)
  )

/** The keys to ask, best first: the one that made the generation, then healthy ones, then the rest. */
const candidates = (engine: EngineState, id: string | null, done: (keys: ReadonlyArray<Key.Key>) => void) => {
  const keys = engine.config.keys
  const owner = id === null ? undefined : Generations.keyOf(engine, id)
  const health = HealthAware.status().pipe(Effect.provideService(KeyPool.KeyPool, engine.built.pool))
  engine.fork(health).addObserver((exit) => {
    const rank = new Map<string, number>()
    if (Exit.isSuccess(exit))
      for (const h of exit.value.keys)
        rank.set(h.id, h.state === "healthy" ? 0 : h.state === "half-open" ? 1 : 2)
    const order = [...keys].sort(
      (a, b) => (a.id === owner ? -1 : (rank.get(a.id) ?? 0)) - (b.id === owner ? -1 : (rank.get(b.id) ?? 0))
    )
    done(order.slice(0, Math.max(1, engine.config.retry.maxAttempts)))
  })
}

/**
 * `GET /generation?id=…`: the next key is asked when one cannot answer for a problem of its own
 * (401, 402, 403, 429, 5xx, no answer); when none could, the gateway's own 503 (never a key's).
 */
export const forwardGeneration = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string
): void => {
  const q = path.indexOf("?")
  const id = q === -1 ? null : new URLSearchParams(path.slice(q + 1)).get("id")
  candidates(engine, id, (keys) => {
    const attempt = (i: number, last: string) => {
      if (res.destroyed) return
      const key = keys[i]
      if (key === undefined) {
        const body = errorBody(503, `no key could look up this generation: ${last}`, {
          reason: "keys_unavailable"
        })
        res.writeHead(503, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
        return void res.end(body)
      }
      call(engine, live, req, path, key, (head) => {
        if (head._tag === "BadPath") return badPath(res)
        if (head._tag === "Broken") return attempt(i + 1, Protocol.scrub(head.message))
        const status = head.response.statusCode
        if (status === 401 || status === 402 || status === 403 || status === 429 || status >= 500) {
          head.response.body.resume()
          return attempt(i + 1, `HTTP ${status}`)
        }
        pipe(res, head.response)
      })
    }
    attempt(0, "no key is configured")
  })
}
