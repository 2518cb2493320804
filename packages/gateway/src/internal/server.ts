/**
 * The gateway's hot path: a raw `node:http` handler, upstream through keep-alive `http.Agent`s, bodies piped
 * as Node streams. A request whose stack can decide at once is forwarded with no fiber: the
 * balancer leases its first attempt synchronously (`Balancer.unsafeStart`) and callbacks settle
 * it. Effect runs everything that waits or retries (a permit, a cooldown, failover, backoff) on
 * the engine's prebuilt runtime, one fiber per such request. Measured per-request cost and where
 * it goes: `examples/bench/gateway.ts` (CPU µs per request).
 */
import type * as Balancer from "@or-balancer/core/Balancer"
import type * as Key from "@or-balancer/core/Key"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Monitor from "@or-balancer/core/Monitor"
import type * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import type { Readable } from "node:stream"
import * as v8 from "node:v8"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as GatewayConfig from "../GatewayConfig.js"
import type * as Engine from "./engine.js"

// --- Engine: one configuration's runtime, tokens and upstream pools -------------------------

export interface Upstream {
  readonly request: typeof http.request
  readonly agent: http.Agent
  readonly hostname: string
  readonly port: string
  /** The base URL's path, e.g. `/api/v1`. */
  readonly prefix: string
}

export interface EngineState {
  readonly config: GatewayConfig.GatewayConfig
  readonly built: Engine.Built
  readonly fork: <A, E>(
    effect: Effect.Effect<A, E, Engine.EngineServices>
  ) => import("effect/Fiber").RuntimeFiber<A, E>
  readonly tokens: ReadonlyArray<Buffer>
  readonly upstreams: Map<string, Upstream>
  /** Per connection, the last Authorization header this configuration accepted (a reload re-checks). */
  readonly accepted: WeakMap<object, string>
  active: number
  retired: boolean
}

export const makeEngineState = (config: GatewayConfig.GatewayConfig, built: Engine.Built): EngineState => ({
  config,
  built,
  fork: Runtime.runFork(built.runtime),
  tokens: config.tokens.map((t) => digest(Redacted.value(t))),
  upstreams: new Map(),
  accepted: new WeakMap(),
  active: 0,
  retired: false
})

const upstreamFor = (engine: EngineState, baseUrl: string): Upstream => {
  let u = engine.upstreams.get(baseUrl)
  if (u === undefined) {
    const url = new URL(baseUrl)
    const tls = url.protocol === "https:"
    // Measured: node's client with a keep-alive agent answers sooner than undici's Pool here.
    const options = { keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: "lifo" as const }
    u = {
      request: tls ? https.request : http.request,
      agent: tls ? new https.Agent(options) : new http.Agent(options),
      hostname: url.hostname,
      port: url.port,
      prefix: url.pathname.replace(/\/+$/, "")
    }
    engine.upstreams.set(baseUrl, u)
  }
  return u
}

/** Closes the engine's upstream connections (called once no request uses it) and its layer scope. */
export const disposeEngine = (engine: EngineState): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.sync(() => {
      for (const u of engine.upstreams.values()) u.agent.destroy()
    }),
    Scope.close(engine.built.scope, Exit.void)
  )

// --- GC tuning for the process that serves -------------------------------------------------

let gcTuned = false

/**
 * Turns off V8's allocation-site pretenuring, once per process. A request's fiber and what it
 * holds live about one upstream round trip: long enough that V8 starts allocating them straight
 * into the old generation, where they die, and until the next full GC they keep the young objects
 * they point to alive through every scavenge (3-4x the survivors per scavenge, measured). Without
 * pretenuring those objects die young. Measured with `examples/bench/gateway.ts`'s load (50
 * connections, 50 ms upstream): about 30% less gateway CPU per request. It only steers the GC's
 * heuristics; nothing else changes.
 */
export const tuneGc = (): void => {
  if (gcTuned) return
  gcTuned = true
  v8.setFlagsFromString("--no-allocation-site-pretenuring")
}

// --- Server state ---------------------------------------------------------------------------

export interface ServerState {
  engine: EngineState
  active: number
  draining: boolean
  generation: number
  readonly idle: Set<() => void>
  readonly onRetired: (engine: EngineState) => void
}

// One-shot `crypto.hash` (Node ≥ 20.12) skips the Hash object per request; older 20.x fall back.
const digest: (s: string) => Buffer =
  typeof crypto.hash === "function"
    ? (s) => crypto.hash("sha256", s, "buffer")
    : (s) => crypto.createHash("sha256").update(s).digest()

/** Constant time in the token's content: compare fixed-size digests, and always all of them. */
const authorized = (engine: EngineState, header: string | undefined, connection: object): boolean => {
  if (engine.tokens.length === 0) return true
  if (header === undefined || !header.startsWith("Bearer ")) return false
  // A keep-alive client sends the same header on every request: once accepted on a connection,
  // it is accepted again without hashing (the digest showed in profiles). The comparison with the
  // accepted header takes time set by the presented header alone, so a connection shared by
  // several clients (a reverse proxy's) tells one nothing of another's token.
  const known = engine.accepted.get(connection)
  if (known !== undefined && sameText(header, known)) return true
  const presented = digest(header.slice(7).trim())
  let ok = false
  for (const t of engine.tokens) ok = crypto.timingSafeEqual(presented, t) || ok
  if (ok) engine.accepted.set(connection, header)
  return ok
}

/** Equality in time that depends on `presented`'s length only: every character is compared. */
const sameText = (presented: string, known: string): boolean => {
  let diff = presented.length ^ known.length
  for (let i = 0; i < presented.length; i++)
    diff |= presented.charCodeAt(i) ^ known.charCodeAt(i % known.length)
  return diff === 0
}

// --- Small answers in OpenAI's error shape ----------------------------------------------------

const sendJson = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>
): void => {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}

const openAiError = (
  res: http.ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null,
  headers?: Record<string, string>
) => sendJson(res, status, { error: { message, type, param: null, code } }, headers)

// --- Routing --------------------------------------------------------------------------------

type Route = "chat" | "models" | "healthz" | "metrics" | "status" | undefined

const routeOf = (method: string | undefined, path: string): Route => {
  switch (path) {
    case "/v1/chat/completions":
    case "/api/v1/chat/completions":
      return method === "POST" ? "chat" : undefined
    case "/v1/models":
    case "/api/v1/models":
      return method === "GET" ? "models" : undefined
    case "/healthz":
      return method === "GET" ? "healthz" : undefined
    case "/metrics":
      return method === "GET" ? "metrics" : undefined
    case "/status":
      return method === "GET" ? "status" : undefined
    default:
      return undefined
  }
}

export interface Admin {
  readonly metrics: Effect.Effect<string>
  readonly status: Effect.Effect<unknown>
}

export const makeHandler =
  (state: ServerState, admin: Admin) =>
  (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const route = routeOf(req.method, path)
    if (route === "healthz") {
      return sendJson(res, state.draining ? 503 : 200, { status: state.draining ? "draining" : "ok" })
    }
    if (route === "metrics" || route === "status") {
      const engine = state.engine
      engine.fork(route === "metrics" ? admin.metrics : admin.status).addObserver((exit) => {
        if (Exit.isFailure(exit)) return openAiError(res, 500, "internal error", "server_error", null)
        if (route === "metrics") {
          const text = exit.value as string
          res.writeHead(200, {
            "content-type": "text/plain; version=0.0.4; charset=utf-8",
            "content-length": Buffer.byteLength(text)
          })
          res.end(text)
        } else {
          sendJson(res, 200, exit.value)
        }
      })
      return
    }
    if (route === undefined) {
      return openAiError(res, 404, `no route for ${req.method} ${path}`, "invalid_request_error", "not_found")
    }
    if (state.draining) {
      return openAiError(res, 503, "the gateway is shutting down", "server_error", null, {
        connection: "close",
        "retry-after": "1"
      })
    }
    const engine = state.engine
    if (!authorized(engine, req.headers.authorization, req.socket)) {
      return openAiError(
        res,
        401,
        "missing or invalid gateway token (send Authorization: Bearer <token>)",
        "invalid_request_error",
        "invalid_api_key"
      )
    }
    // Counted from here to the response's close, so a drain or an engine swap waits for it.
    state.active++
    engine.active++
    // One close listener per request: the counts, then the request's own cancel (client gone).
    const live: Live = { cancel: undefined }
    res.once("close", () => {
      state.active--
      engine.active--
      if (engine.retired && engine.active === 0) state.onRetired(engine)
      if (state.draining && state.active === 0) for (const f of state.idle) f()
      live.cancel?.()
    })
    if (route === "models")
      return forward(engine, live, req, res, "GET", `/models${q === -1 ? "" : url.slice(q)}`, undefined, {})
    readBody(engine, live, req, res)
  }

/** Per-request hook run when the response closes: set once the request is forwarded. */
interface Live {
  cancel: (() => void) | undefined
}

const readBody = (engine: EngineState, live: Live, req: http.IncomingMessage, res: http.ServerResponse) => {
  const limit = engine.config.bodyLimitBytes
  const tooLarge = () => {
    openAiError(
      res,
      413,
      `request body is larger than the limit of ${limit} bytes`,
      "invalid_request_error",
      "request_too_large",
      { connection: "close" }
    )
    req.resume()
  }
  const declared = Number(req.headers["content-length"])
  if (declared > limit) return tooLarge()
  const chunks: Array<Buffer> = []
  let size = 0
  let over = false
  req.on("data", (chunk: Buffer) => {
    if (over) return
    size += chunk.length
    if (size > limit) {
      over = true
      chunks.length = 0
      return tooLarge()
    }
    chunks.push(chunk)
  })
  req.on("end", () => {
    if (over || res.destroyed) return
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
    let json: unknown
    try {
      json = JSON.parse(body.toString("utf8"))
    } catch (e) {
      const why = e instanceof Error ? e.message : "parse error"
      return openAiError(
        res,
        400,
        `invalid JSON in request body: ${why}`,
        "invalid_request_error",
        "invalid_json"
      )
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      return openAiError(
        res,
        400,
        "request body must be a JSON object",
        "invalid_request_error",
        "invalid_body"
      )
    }
    const o = json as Record<string, unknown>
    if (typeof o.model !== "string" && !Array.isArray(o.models)) {
      return openAiError(
        res,
        400,
        'request body needs a "model" (a string)',
        "invalid_request_error",
        "invalid_body"
      )
    }
    const model = typeof o.model === "string" ? o.model : undefined
    const affinity = Protocol.affinityOf(o)
    forward(engine, live, req, res, "POST", "/chat/completions", body, { model, affinity })
  })
}

// --- Forwarding through the balancer --------------------------------------------------------

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: Readable
}

interface RawError {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly text: string
}

/** The upstream's own error answer, kept so the client can get it verbatim when all attempts fail. */
const rawErrors = new WeakMap<object, RawError>()

/** The answer sent when the balancer gives up. */
interface Outcome {
  readonly _tag: "Error"
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

const HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "proxy-connection",
  "upgrade",
  "te",
  "trailer"
])

const copyHeaders = (h: Answer["headers"]) => {
  const out: Record<string, string | Array<string>> = {}
  for (const name in h) {
    const v = h[name]
    if (v !== undefined && !HOP.has(name)) out[name] = v
  }
  return out
}

const transportError = (e: unknown): UpstreamError.UpstreamError => {
  const code = (e as { code?: unknown })?.code
  if (
    code === "UND_ERR_HEADERS_TIMEOUT" ||
    code === "UND_ERR_CONNECT_TIMEOUT" ||
    code === "UND_ERR_BODY_TIMEOUT"
  ) {
    return new UpstreamError.Timeout({ message: `upstream timed out (${code})` })
  }
  const message = e instanceof Error ? e.message : String(e)
  return new UpstreamError.Transport({
    message: Protocol.scrub(`upstream connection failed: ${message}`)
  })
}

/**
 * Calls upstream with one key; `done` gets the answer's head (status < 400, its body still to
 * come) or the key's failure, once. Callbacks rather than an Effect: the fast path runs with no fiber.
 */
const startUpstream = (
  engine: EngineState,
  ctx: RequestContext,
  key: Key.Key,
  done: (result: Answer | UpstreamError.UpstreamError) => void
): void => {
  const { body, method } = ctx
  const headers: Record<string, string | number> = {
    authorization: `Bearer ${Redacted.value(key.secret)}`,
    accept: ctx.accept ?? "*/*"
  }
  if (body !== undefined) {
    headers["content-type"] = "application/json"
    headers["content-length"] = body.length
  }
  if (ctx.referer !== undefined) headers["http-referer"] = ctx.referer
  if (ctx.title !== undefined) headers["x-title"] = ctx.title
  let settled = false
  // A call that cannot even be made (a key's `baseUrl` that is no URL, a header Node refuses)
  // throws here: that is the key's failure, not a throw out of the request handler (which, on
  // the fast path, would end the process with the key still leased).
  let req: http.ClientRequest
  try {
    const up = upstreamFor(engine, key.baseUrl ?? engine.config.baseUrl)
    req = up.request(
      {
        agent: up.agent,
        hostname: up.hostname,
        port: up.port,
        method,
        path: up.prefix + ctx.suffix,
        headers
      },
      (res) => {
        const status = res.statusCode ?? 502
        if (status < 400) {
          settled = true
          // From here the deadline is the longest silence between two body chunks.
          req.setTimeout(engine.config.deadlines.bodyIdleMs)
          const answer: Answer = { status, headers: res.headers, body: res }
          ctx.answer = answer
          return done(answer)
        }
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => {
          settled = true
          done(
            upstreamFailure(
              engine,
              { status, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") },
              ctx.model
            )
          )
        })
        res.on("error", (e) => {
          if (settled) return
          settled = true
          done(transportError(e))
        })
      }
    )
  } catch (e) {
    return done(transportError(e))
  }
  req.setTimeout(engine.config.deadlines.headersMs, () => {
    const e = Object.assign(new Error("upstream timed out"), { code: "UND_ERR_HEADERS_TIMEOUT" })
    req.destroy(e)
    // After the first byte the response stream carries the error to the piping code.
    ctx.answer?.body.destroy(e)
  })
  req.on("error", (e) => {
    if (settled) return
    settled = true
    done(transportError(e))
  })
  req.end(body)
  ctx.upstream = req
}

const isAnswer = (result: Answer | UpstreamError.UpstreamError): result is Answer => "body" in result

/**
 * `startUpstream` for the balancer's retries. No canceler: it would cost five more fiber steps
 * on every request. An interrupted request (the client went away) has its upstream call aborted
 * by the fiber's observer instead, and a late answer's resume is ignored by the interrupted fiber.
 */
const callUpstream = (
  engine: EngineState,
  ctx: RequestContext,
  key: Key.Key
): Effect.Effect<Answer, UpstreamError.UpstreamError> =>
  Effect.async<Answer, UpstreamError.UpstreamError>((resume) =>
    startUpstream(engine, ctx, key, (result) =>
      resume(isAnswer(result) ? Effect.succeed(result) : Effect.fail(result))
    )
  )

/** An upstream error answer as the balancer's error, its raw form kept for the client. */
const upstreamFailure = (
  engine: EngineState,
  r: RawError,
  model: string | undefined
): UpstreamError.UpstreamError => {
  const now = engine.built.clock.unsafeCurrentTimeMillis()
  const error = Protocol.fromResponse(r.status, r.headers, r.text, { now, model })
  rawErrors.set(error, r)
  return error
}

/** One forwarded request: what is sent upstream on each attempt, and the current attempt's call. */
interface RequestContext {
  readonly method: "GET" | "POST"
  /** The path under the upstream's base URL, e.g. `/chat/completions`. */
  readonly suffix: string
  readonly body: Buffer | undefined
  readonly model: string | undefined
  readonly accept: string | undefined
  readonly referer: string | undefined
  readonly title: string | undefined
  /** The current attempt's upstream call. */
  upstream: http.ClientRequest | undefined
  answer: Answer | undefined
}

const header1 = (v: string | Array<string> | undefined) => (Array.isArray(v) ? v[0] : v)

const errorBody = (status: number, message: string, metadata?: Record<string, unknown>) =>
  JSON.stringify({ error: { code: status, message, ...(metadata === undefined ? {} : { metadata }) } })

const retryAfterHeader = (d: Duration.Duration | undefined, headers: Record<string, string>) => {
  if (d !== undefined) headers["retry-after"] = String(Math.max(1, Math.ceil(Duration.toSeconds(d))))
}

/** What the client gets when the balancer gives up. */
const failureAnswer = (
  balancer: Balancer.Service,
  e: UpstreamError.UpstreamError | Balancer.AllAttemptsFailed | KeySelector.NoKeyAvailable
): Effect.Effect<Outcome> =>
  Effect.gen(function* () {
    const headers: Record<string, string> = { "content-type": "application/json" }
    if (e._tag === "NoKeyAvailable") {
      const status = e.reason === "model" ? 400 : 503
      retryAfterHeader(e.retryAfter, headers)
      return {
        _tag: "Error",
        status,
        headers,
        body: errorBody(status, e.message, { reason: e.reason })
      } as const
    }
    const last: UpstreamError.UpstreamError | undefined =
      e._tag === "AllAttemptsFailed" ? e.attempts[e.attempts.length - 1]?.error : e
    // Retry-After: the balancer's own (the pool is cooling), else the earliest cooldown, else upstream's.
    let wait = e._tag === "AllAttemptsFailed" ? e.retryAfter : undefined
    if (wait === undefined && e._tag === "AllAttemptsFailed") {
      const cooling = yield* balancer.cooldowns
      if (cooling.length > 0) {
        const now = yield* Clock.currentTimeMillis
        const until = Math.min(...cooling.map((c) => c.until))
        wait = Duration.millis(Math.max(0, until - now))
      }
    }
    const raw = last === undefined ? undefined : rawErrors.get(last)
    if (raw !== undefined) {
      const upstreamWait = header1(raw.headers["retry-after"])
      if (wait === undefined && upstreamWait !== undefined) headers["retry-after"] = upstreamWait
      else retryAfterHeader(wait, headers)
      const ct = header1(raw.headers["content-type"])
      if (ct !== undefined) headers["content-type"] = ct
      return { _tag: "Error", status: raw.status, headers, body: raw.text } as const
    }
    retryAfterHeader(wait, headers)
    const status = last === undefined ? 502 : UpstreamError.statusOf(last)
    return {
      _tag: "Error",
      status,
      headers,
      body: errorBody(status, Protocol.scrub(last?.message ?? e.message), {
        error_type: last?._tag ?? e._tag
      })
    } as const
  })

const TAIL = 4096

/** Sends a failure answer (status, headers and body as decided by `failureAnswer`). */
const sendOutcome = (res: http.ServerResponse, outcome: Outcome) => {
  if (res.headersSent || res.destroyed) return
  res.writeHead(outcome.status, { ...outcome.headers, "content-length": Buffer.byteLength(outcome.body) })
  res.end(outcome.body)
}

/** How a piped answer is settled: `Balancer.Started` has this shape, and the fiber path adapts to it. */
interface Settler {
  readonly unsafeSucceed: (cost?: number | undefined) => void
  readonly unsafeFail: (error: UpstreamError.UpstreamError) => void
  readonly unsafeCancel: () => void
}

/**
 * Pipes the answer's body to the client as it comes, then settles: success with the cost read
 * from the tail, or failure for an in-band stream error, a body that is not the JSON it claims
 * to be, or a broken upstream stream. Settles exactly once.
 */
const pipeAnswer = (
  engine: EngineState,
  ctx: RequestContext,
  res: http.ServerResponse,
  answer: Answer,
  settler: Settler
): void => {
  if (res.destroyed) {
    answer.body.destroy()
    return settler.unsafeCancel()
  }
  res.writeHead(answer.status, copyHeaders(answer.headers))
  // The tail is kept to read the final usage (cost) and an in-band stream error.
  let prev: Buffer | undefined
  let last: Buffer | undefined
  let size = 0
  let settled = false
  answer.body.on("data", (chunk: Buffer) => {
    prev = last
    last = chunk
    size += chunk.length
  })
  answer.body.once("end", () => {
    if (settled) return
    settled = true
    const tailBuf = prev === undefined ? last : last === undefined ? prev : Buffer.concat([prev, last])
    const tail =
      tailBuf === undefined ? "" : tailBuf.subarray(Math.max(0, tailBuf.length - TAIL)).toString("utf8")
    // A chat answer that is not the JSON or stream it should be (an HTML page behind a 200, a body
    // cut short) or that ends with an in-band error reached the client as sent, but counts
    // against the key, so health can take it out.
    // The tail is the whole body when the body is that small (an error object in a 200 is).
    const whole = tailBuf !== undefined && size === tailBuf.length && size <= TAIL ? tail : undefined
    const verdict = Protocol.tailVerdict(answer.status, answer.headers, ctx.method === "POST", tail, whole, {
      now: engine.built.clock.unsafeCurrentTimeMillis(),
      model: ctx.model
    })
    if (verdict._tag === "Success") settler.unsafeSucceed(verdict.cost)
    else settler.unsafeFail(verdict.error)
  })
  answer.body.once("error", (e) => {
    if (res.destroyed || settled) return
    settled = true
    settler.unsafeFail(transportError(e))
    res.destroy()
  })
  answer.body.pipe(res)
}

/**
 * Forwards one request. Most take the fast path, with no fiber: the balancer leases a key
 * synchronously (`Balancer.unsafeStart`), the upstream call and the piping run on callbacks, and
 * the outcome is reported synchronously. A fiber per request was most of the gateway's CPU over
 * a raw proxy's (measured in `examples/bench/gateway.ts`). Whatever needs waiting or a retry
 * goes to {@link forwardOnFiber}: a stack that cannot select synchronously, no key eligible
 * right now, or a first attempt that failed before any byte reached the client.
 */
const forward = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  method: "GET" | "POST",
  suffix: string,
  body: Buffer | undefined,
  request: Balancer.RunRequest
) => {
  const ctx: RequestContext = {
    method,
    suffix,
    body,
    model: request.model,
    accept: header1(req.headers.accept),
    referer: header1(req.headers["http-referer"]),
    title: header1(req.headers["x-title"]),
    upstream: undefined,
    answer: undefined
  }
  const started = engine.built.balancer.unsafeStart(request)
  if (started === undefined) return forwardOnFiber(engine, live, res, ctx, request)
  // Set once the attempt is settled: closing the response after that is not a disconnect.
  let settled = false
  const settler: Settler = {
    unsafeSucceed: (cost) => {
      settled = true
      started.unsafeSucceed(cost)
    },
    unsafeFail: (error) => {
      settled = true
      started.unsafeFail(error)
    },
    unsafeCancel: () => {
      settled = true
      started.unsafeCancel()
    }
  }
  live.cancel = () => {
    if (res.writableFinished || settled) return
    // The client went away: abort the upstream call (or its body) and give the key back.
    ctx.upstream?.destroy()
    ctx.answer?.body.destroy()
    settler.unsafeCancel()
  }
  startUpstream(engine, ctx, started.key, (result) => {
    if (settled) return // the client went away meanwhile
    if (isAnswer(result)) return pipeAnswer(engine, ctx, res, result, settler)
    settler.unsafeFail(result)
    // Nothing reached the client yet: the balancer's loop goes on from this failure.
    if (!res.destroyed) forwardOnFiber(engine, live, res, ctx, { ...request, after: started })
  })
}

/**
 * One request on one fiber: select and call upstream through the balancer, with its waits,
 * backoff and failover; once the answer's head is in, pipe its body to the client while the
 * fiber waits (suspended, costing nothing) for the body's end, then report the outcome, which
 * releases the lease. A client that goes away interrupts the fiber; the fiber's observer then
 * aborts the upstream call and releases the key.
 */
const forwardOnFiber = (
  engine: EngineState,
  live: Live,
  res: http.ServerResponse,
  ctx: RequestContext,
  request: Balancer.RunRequest
) => {
  const balancer = engine.built.balancer
  // Set once the outcome is being reported: closing the response after that is not a disconnect.
  let settled = false
  const pipeOnFiber = (scoped: Balancer.Scoped<Answer>): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const settle = (effect: Effect.Effect<void>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      pipeAnswer(engine, ctx, res, scoped.value, {
        unsafeSucceed: (cost) => settle(scoped.succeed(cost)),
        unsafeFail: (error) => settle(scoped.fail(error)),
        unsafeCancel: () => settle(scoped.cancel)
      })
    })
  // The failure answer is decided in the fiber's observer, off the success path.
  // The held answer is settled by `pipeOnFiber`, or cancelled by the observer if the fiber ends
  // any other way: no `Scope` per request (making and closing one cost ~13 µs of CPU, measured).
  let held: Balancer.Scoped<Answer> | undefined
  const program = Effect.flatMap(
    balancer.runHeld(
      request,
      (key) => callUpstream(engine, ctx, key),
      (h) => {
        held = h
      }
    ),
    pipeOnFiber
  )
  const fiber = engine.fork(program)
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit)) return
    // Interrupted (the client went away): abort the upstream call or its answer.
    if (Cause.isInterrupted(exit.cause)) ctx.upstream?.destroy()
    // Abandoned after the hand-over: no verdict on the key. A no-op once settled.
    if (held !== undefined) engine.fork(held.cancel)
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "Some") {
      settled = true
      engine.fork(failureAnswer(balancer, failure.value)).addObserver((answer) => {
        if (Exit.isSuccess(answer)) sendOutcome(res, answer.value)
        else openAiError(res, 500, "internal gateway error", "server_error", null)
      })
    } else if (!Cause.isInterruptedOnly(exit.cause)) {
      openAiError(res, 500, "internal gateway error", "server_error", null)
    }
  })
  live.cancel = () => {
    if (res.writableFinished || settled) return
    // The client went away: cancel the upstream call (or its body); the observer releases the key.
    fiber.unsafeInterruptAsFork(FiberId.none)
    ctx.answer?.body.destroy()
  }
}

// --- Admin: status and the gauges it shares with /metrics ------------------------------------

/**
 * What is known of each key right now: health (the health-aware strategy's ejections and the
 * balancer's Retry-After cooldowns), the end of its cooldown, and its credit (the ledger's live
 * balance when the stack keeps one, else the monitor's last report). Also written to the
 * monitor's credit and cooldown gauges, so `/metrics` carries them and a cooldown that has ended
 * reads 0 again.
 */
const keyViews = (state: ServerState) =>
  Effect.gen(function* () {
    const engine = state.engine
    const monitor = yield* Monitor.Monitor
    const stats = yield* monitor.stats
    const keys = yield* engine.built.pool.get
    const cooldowns = yield* engine.built.balancer.cooldowns
    const health = yield* HealthAware.status().pipe(Effect.provideService(KeyPool.KeyPool, engine.built.pool))
    const ledger = engine.built.ledger === undefined ? [] : yield* engine.built.ledger.snapshot
    const now = yield* Clock.currentTimeMillis
    const byId = new Map(stats.keys.map((k) => [k.id, k]))
    const healthById = new Map(health.keys.map((h) => [h.id, h]))
    const creditById = new Map(ledger.map((e) => [e.id, e]))
    const views = keys.map((key) => {
      const h = healthById.get(key.id)
      let until = h?.state === "ejected" ? h.until : undefined
      for (const c of cooldowns) {
        if ((c.scope === "key" && c.id === key.id) || (c.scope === "account" && c.id === key.account)) {
          until = until === undefined ? c.until : Math.max(until, c.until)
        }
      }
      if (until !== undefined && until <= now) until = undefined
      const entry = creditById.get(key.id)
      // A failed lookup (a revoked key) has no balance to show: its error is shown instead.
      const credit =
        entry !== undefined && entry.error === undefined && entry.lookedUpAt !== undefined
          ? entry.available
          : (byId.get(key.id)?.credit ?? null)
      const healthState =
        h?.state === "ejected" ? "ejected" : until !== undefined ? "cooling" : (h?.state ?? "healthy")
      return { key, stats: byId.get(key.id), until, credit, creditError: entry?.error, health: healthState }
    })
    for (const v of views) {
      if (v.credit !== null && v.credit !== undefined) yield* monitor.credit(v.key, v.credit)
      yield* monitor.cooldown(v.key, v.until)
    }
    return { stats, views }
  })

/** Brings the credit and cooldown gauges up to date before the metrics are rendered. */
export const refreshGauges = (
  state: ServerState
): Effect.Effect<void, never, Monitor.Monitor | StateStore.StateStore> => Effect.asVoid(keyViews(state))

export const status = (state: ServerState) =>
  Effect.gen(function* () {
    const engine = state.engine
    const { stats, views } = yield* keyViews(state)
    return {
      status: state.draining ? "draining" : "ok",
      generation: state.generation,
      inFlightRequests: state.active,
      strategy: engine.config.strategy.map((s) => s.name),
      totals: {
        requests: stats.requests,
        successes: stats.successes,
        failures: stats.failures,
        retries: stats.retries,
        spendUsd: stats.spend,
        inFlight: stats.inFlight
      },
      keys: views.map(({ key, stats: s, until, credit, creditError, health }) => ({
        id: key.id,
        account: key.account ?? null,
        weight: key.weight,
        health,
        coolingUntil: until === undefined ? null : new Date(until).toISOString(),
        credit: credit ?? null,
        creditError: creditError ?? null,
        inFlight: s?.inFlight ?? 0,
        requests: s?.requests ?? 0,
        successes: s?.successes ?? 0,
        failures: s?.failures ?? 0,
        errors: s?.errors ?? {},
        errorRate: s?.errorRate ?? 0,
        latencyMs: s?.latencyMs ?? { p50: 0, p99: 0, mean: 0, max: 0 },
        spendUsd: s?.spend ?? 0
      }))
    }
  })
