/**
 * The gateway's `node:http` handler: routing, the token check, the request's body and what the
 * balancer needs of it, then {@link forward}. Bodies are piped as Node streams upstream; Effect
 * only decides (see `forward.ts`).
 */
import * as Protocol from "@or-balancer/http/Protocol"
import type * as http from "node:http"
import type * as net from "node:net"
import { type Admin, serveAdmin } from "./admin.js"
import type { ClientConfig } from "../GatewayConfig.js"
import { authorized, clientOf } from "./auth.js"
import * as Clients from "./clients.js"
import * as ClientsFleet from "./clientsFleet.js"
import * as AdminAuth from "./dashboard/auth.js"
import * as Dashboard from "./dashboard/handler.js"
import { forward, Live } from "./forward.js"
import * as Log from "./log.js"
import * as Prices from "./prices.js"
import { forwardGeneration, forwardModels } from "./passthrough.js"
import { MAX_RETRY_AFTER_S, openAiError } from "./respond.js"
import { routeOf } from "./routes.js"
import type { EngineState, ServerState } from "./state.js"

export const makeHandler =
  (state: ServerState, admin: Admin) =>
  (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const route = routeOf(req.method, path)
    // Request id (echoed, passed upstream) and the request's log line when logging is on: log.ts.
    // Every answer gets its line, the gateway's own refusals included; the admin routes' successes
    // (health checks, scrapes, the status page) only at debug level, and with no span.
    const id = Log.requestId(req.headers["x-request-id"])
    Log.setId(res, id)
    const quiet = route !== undefined && (route._tag === "Admin" || route._tag === "Dashboard")
    // No span for an unknown path either: a span's name is its route, and this one is anything.
    const log = Log.start(state.engine, req, res, id, path, quiet, !quiet && route !== undefined)
    // HTTP/1.1 requires Host (RFC 9112 3.2); the server leaves the check here to answer it in JSON.
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      return openAiError(res, 400, "missing Host header", "invalid_request_error", "invalid_request", {
        connection: "close"
      })
    }
    if (route === undefined) {
      return openAiError(res, 404, `no route for ${req.method} ${path}`, "invalid_request_error", "not_found")
    }
    if (route._tag === "WrongMethod") {
      req.resume()
      return openAiError(
        res,
        405,
        `${req.method} is not allowed on ${path} (allowed: ${route.allow})`,
        "invalid_request_error",
        "method_not_allowed",
        { allow: route.allow }
      )
    }
    if (route._tag === "Admin" && route.route === "healthz") return serveAdmin(state, admin, "healthz", res)
    if (route._tag === "Dashboard") return Dashboard.handle(req, res, AdminAuth.of(state.engine.config))
    if (route._tag === "Admin") {
      const config = state.engine.config
      if (config.admin.protect && !AdminAuth.allowed(req, AdminAuth.of(config))) {
        return openAiError(
          res,
          401,
          "missing or invalid admin token",
          "invalid_request_error",
          "invalid_api_key"
        )
      }
      return serveAdmin(state, admin, route.route, res)
    }
    if (state.draining) {
      return openAiError(res, 503, "the gateway is shutting down", "server_error", null, {
        connection: "close",
        "retry-after": "1"
      })
    }
    const engine = state.engine
    const open = route._tag === "Models" && engine.config.publicModels
    if (!open && !authorized(engine, req.headers.authorization, req.socket)) {
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
    // Counted down once, on the response's close or the connection's, whichever comes first: a
    // request pipelined behind an answer with `connection: close` (a 413) is parsed and handed
    // here, but its response never emits "close" (Node's behaviour); its connection does.
    const live = new Served(state, engine, req.socket, id, log)
    res.on("close", live.onClose)
    servedOn(req.socket).add(live)
    const query = q === -1 ? "" : url.slice(q)
    if (route._tag === "Models") return forwardModels(engine, live, req, res, route.suffix + query)
    if (route._tag === "Generation") return forwardGeneration(engine, live, req, res, "/generation" + query)
    readBody(engine, live, req, res, route.suffix, clientOf(engine, req.socket))
  }

/**
 * The requests of a connection still counted: one close listener per connection, added with its
 * first request, ends them all (a listener added and taken off the socket per request cost more).
 */
const SERVED = Symbol("or-balancer/served")
type WithServed = net.Socket & { [SERVED]?: Set<Served> }

const servedOn = (socket: net.Socket): Set<Served> => {
  const s = socket as WithServed
  let served = s[SERVED]
  if (served === undefined) {
    const set = (served = s[SERVED] = new Set())
    socket.once("close", () => {
      for (const live of set) live.finished()
    })
  }
  return served
}

/**
 * A request the handler counts as active until its response or its connection closes. The
 * response's close listener is one bound method (not a closure named per request).
 */
class Served extends Live {
  private counted = true
  readonly onClose: () => void
  constructor(
    private readonly state: ServerState,
    private readonly engine: EngineState,
    private readonly socket: net.Socket,
    id: string,
    log: Log.RequestLog | undefined
  ) {
    super(id, log)
    this.onClose = this.finished.bind(this)
  }
  finished(): void {
    if (!this.counted) return
    this.counted = false
    const { engine, state } = this
    ;(this.socket as WithServed)[SERVED]?.delete(this)
    state.active--
    engine.active--
    if (engine.retired && engine.active === 0) state.onRetired(engine)
    if (state.draining && state.active === 0) for (const f of state.idle) f()
    this.cancel()
    // Not settled with a cost by now: it failed or was abandoned; its reservation is released.
    this.charge?.settle(undefined, false)
  }
}

/** A body over the limit: 413, and the connection closes after it. */
const tooLarge = (req: http.IncomingMessage, res: http.ServerResponse, limit: number) => {
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

/** A client's refusal: 403 naming the model, or 429 with its reset (`Retry-After`, capped as every one the gateway sends). */
const refuse = (engine: EngineState, res: http.ServerResponse, r: Clients.Refusal) => {
  const headers: Record<string, string> = {}
  if (r.resetAt !== undefined) {
    const s = Math.ceil((r.resetAt - engine.built.clock.unsafeCurrentTimeMillis()) / 1000)
    headers["retry-after"] = String(Math.min(MAX_RETRY_AFTER_S, Math.max(1, s)))
    headers["x-ratelimit-reset"] = String(r.resetAt)
  }
  openAiError(
    res,
    r.status,
    r.message,
    r.status === 403 ? "permission_error" : "rate_limit_error",
    r.code,
    headers
  )
}

/**
 * Reads a POST route's body (chat, completions, embeddings, responses) within the limit, checks it
 * is a JSON object with a model, and forwards it to `suffix` under the upstream's base URL.
 */
const readBody = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  suffix: string,
  client: ClientConfig | undefined
) => {
  const limit = engine.config.bodyLimitBytes
  const declared = Number(req.headers["content-length"])
  if (declared > limit) return tooLarge(req, res, limit)
  const chunks: Array<Buffer> = []
  let size = 0
  let over = false
  req.on("data", (chunk: Buffer) => {
    if (over) return
    size += chunk.length
    if (size > limit) {
      over = true
      chunks.length = 0
      return tooLarge(req, res, limit)
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
    if (live.log !== undefined) live.log.model = model
    // No closure for this (under tsx a named one costs an `Object.defineProperty` per request).
    if (client === undefined) return forwardBody(engine, live, req, res, suffix, body, model, o)
    const models = model !== undefined ? [model] : (o.models as Array<unknown>).map(String)
    const now = engine.built.clock.unsafeCurrentTimeMillis()
    const priced =
      client.budget?.priced === true ? Prices.worstCase(engine.prices, models, size, o.max_tokens) : undefined
    const fleet = engine.built.fleet
    if (fleet !== undefined && (client.budget !== undefined || client.rpm !== undefined)) {
      const wrongModel = Clients.checkModels(
        Clients.account(engine.clientLedger, client, now),
        client,
        models
      )
      if (wrongModel !== undefined) return refuse(engine, res, wrongModel)
      const amount = client.budget === undefined ? 0 : Clients.estimate(client.budget, o.max_tokens, priced)
      const ttlMs = engine.config.deadlines.requestMs + engine.config.deadlines.bodyIdleMs
      const clock = engine.built.clock
      return ClientsFleet.admit(
        fleet,
        engine.clientFleet,
        engine.clientLedger,
        client,
        amount,
        ttlMs,
        () => clock.unsafeCurrentTimeMillis(),
        (admitted) => {
          if (Clients.isRefusal(admitted)) return refuse(engine, res, admitted)
          // The caller left while Redis answered: nothing to forward, the reservation goes back.
          if (res.destroyed) return admitted.settle(undefined, false)
          live.charge = admitted
          forwardBody(engine, live, req, res, suffix, body, model, o)
        }
      )
    }
    const admitted = Clients.admit(engine.clientLedger, client, models, o.max_tokens, now, priced)
    if (Clients.isRefusal(admitted)) return refuse(engine, res, admitted)
    live.charge = admitted
    forwardBody(engine, live, req, res, suffix, body, model, o)
  })
}

const forwardBody = (
  engine: EngineState,
  live: Live,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  suffix: string,
  body: Buffer,
  model: string | undefined,
  o: Record<string, unknown>
) => forward(engine, live, req, res, "POST", suffix, body, { model, affinity: Protocol.affinityOf(o) })
