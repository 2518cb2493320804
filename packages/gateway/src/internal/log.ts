/**
 * Request logs: one JSON line per request on stdout (its id, client, model, each attempt's key,
 * status, outcome and latency, why it failed over, the final status, cost and duration), and event
 * lines (see `events.ts`). The same record feeds the request's spans when tracing is on (trace.ts).
 * Nothing here runs when both are off but the request id: the record is made only when the config
 * asks for lines or a tracer is installed, its hooks in the request's path are one `undefined`
 * test each, and no Effect runs per request. Lines are buffered and written with one
 * `process.stdout.write` per turn of the event loop. Every line passes `Protocol`'s scrubber.
 */
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as Clock from "effect/Clock"
import * as crypto from "node:crypto"
import type * as http from "node:http"
import type * as GatewayConfig from "../GatewayConfig.js"
import type { Answer } from "./answer.js"
import { digest } from "./auth.js"
import type { Settler } from "./settle.js"
import type { EngineState } from "./state.js"
import { RequestTrace } from "./trace.js"
import type { Failed } from "./upstream.js"

export type Level = "debug" | "info" | "warn" | "error"

const RANK: Readonly<Record<Level, number>> = { debug: 10, info: 20, warn: 30, error: 40 }

type Settings = NonNullable<GatewayConfig.GatewayConfig["log"]>

/** Off unless the config says so (a config built by hand may have no `log` section). */
const OFF: Settings = { requests: false, level: "info" }

export const settingsOf = (config: GatewayConfig.GatewayConfig): Settings => config.log ?? OFF

export const enabled = (settings: Settings, level: Level): boolean => RANK[level] >= RANK[settings.level]

// --- The writer: lines gathered over one turn of the event loop, written at once ---------------

let pending: Array<string> = []
let size = 0
let scheduled = false
let hooked = false

/** Writes what is pending. Also run on process exit and when the gateway has drained. */
export const flush = (): void => {
  scheduled = false
  if (pending.length === 0) return
  const text = pending.length === 1 ? pending[0]! : pending.join("")
  pending = []
  size = 0
  process.stdout.write(text)
}

const ignore = () => undefined

/** Queues one line (scrubbed: no key secret in any form leaves through a log). */
export const writeLine = (line: string): void => {
  if (!hooked) {
    hooked = true
    process.once("exit", flush)
    // A log reader that went away (EPIPE) must not end the gateway.
    process.stdout.on("error", ignore)
  }
  const text = Protocol.scrub(line) + "\n"
  pending.push(text)
  size += text.length
  if (size >= 64 * 1024) return flush()
  if (!scheduled) {
    scheduled = true
    setImmediate(flush)
  }
}

const timeOf = (clock: Clock.Clock) => new Date(clock.unsafeCurrentTimeMillis()).toISOString()

/** An event line (a key ejected, a reload, the drain), when `level` is logged. */
export const event = (
  settings: Settings,
  clock: Clock.Clock,
  level: Level,
  name: string,
  fields: Record<string, unknown>
): void => {
  if (!enabled(settings, level)) return
  writeLine(JSON.stringify({ time: timeOf(clock), level, msg: "event", event: name, ...fields }))
}

// --- Request ids ---------------------------------------------------------------------------------

/** A process's ids: a random prefix (unique across replicas and restarts) and a counter. */
const PREFIX = `gw-${crypto.randomBytes(6).toString("hex")}-`
let sequence = 0

/** Printable ASCII, 1 to 128 characters: what a client may set as its request id. */
const validId = (v: string): boolean => {
  if (v.length === 0 || v.length > 128) return false
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (c < 0x20 || c > 0x7e) return false
  }
  return true
}

/**
 * Each response's request id, for the gateway's own answers (respond.ts). Not `res.setHeader`:
 * a header set that way sends every later `writeHead` down Node's slow path, where each of the
 * upstream's headers is validated and set one by one; the upstream's answers get it in their
 * header object instead (settle.ts).
 */
const ID = Symbol.for("@or-balancer/gateway/requestId")
// A property of the response rather than a `WeakMap` entry: a WeakMap entry per request is
// garbage-collector work (ephemerons) on every request.
type WithId = http.ServerResponse & { [ID]?: string }

export const idOf = (res: http.ServerResponse): string | undefined => (res as WithId)[ID]

export const setId = (res: http.ServerResponse, id: string): void => {
  ;(res as WithId)[ID] = id
}

/** Why the gateway answered a request itself (its error code: `not_found`, `invalid_api_key`, …). */
const reasons = new WeakMap<http.ServerResponse, string>()

export const setReason = (res: http.ServerResponse, reason: string): void => {
  reasons.set(res, reason)
}

/** The request's `x-request-id` if it is a valid one, else a new id. */
export const requestId = (header: string | Array<string> | undefined): string => {
  const v = Array.isArray(header) ? header[0] : header
  return v !== undefined && validId(v) ? v : PREFIX + (++sequence).toString(36)
}

// --- Clients ---------------------------------------------------------------------------------------

/** Per connection, the last Authorization header seen and the client it named. */
const clients = new WeakMap<object, { readonly header: string; readonly client: string }>()

/**
 * A named client's id, else the accepted token's name (the environment variable it came from) or
 * index: never the token. Looked up once per connection and header, as the token check caches.
 */
const clientOf = (engine: EngineState, header: string | undefined, connection: object): string | null => {
  if (engine.tokens.length === 0) return "anonymous"
  if (header === undefined || !header.startsWith("Bearer ")) return null
  const known = clients.get(connection)
  if (known !== undefined && known.header === header) return known.client
  const presented = digest(header.slice(7).trim())
  let index = -1
  for (let i = 0; i < engine.tokens.length; i++)
    if (crypto.timingSafeEqual(presented, engine.tokens[i]!)) index = i
  if (index === -1) return null
  const client = engine.owners[index]?.id ?? engine.config.tokenNames?.[index] ?? `token-${index}`
  clients.set(connection, { header, client })
  return client
}

// --- One request's record ------------------------------------------------------------------------

interface Attempt {
  readonly key: string
  readonly start: bigint
  status: number | undefined
  outcome: "pending" | "success" | "failure" | "cancelled"
  /** The key's error (an `UpstreamError` tag) and what the balancer does about it. */
  error: string | undefined
  action: UpstreamError.Disposition | undefined
  message: string | undefined
  firstByteMs: number | undefined
  latencyMs: number | undefined
}

const ms = (from: bigint, to: bigint) => Math.round(Number(to - from) / 1e3) / 1e3

/** What the balancer gave up with, in a few words. */
const whyGaveUp = (e: { readonly _tag: string; readonly reason?: unknown }) =>
  typeof e.reason === "string" ? `${e._tag}: ${e.reason}` : e._tag

const MAX_MESSAGE = 300

/** The request's log line in the making: made only when request logging is on. */
export class RequestLog {
  model: string | undefined = undefined
  stream = false
  cost: number | undefined = undefined
  gaveUp: string | undefined = undefined
  readonly attempts: Array<Attempt> = []
  private readonly start: bigint
  private readonly clock: Clock.Clock

  constructor(
    private readonly engine: EngineState,
    readonly id: string,
    private readonly req: http.IncomingMessage,
    private readonly route: string,
    /** Whether to write the line (else the record only feeds the spans). */
    private readonly lines: boolean,
    private readonly trace: RequestTrace | undefined,
    /** An admin route: a success is logged at debug level only. */
    private readonly quiet = false
  ) {
    this.clock = engine.built.clock
    this.start = this.clock.unsafeCurrentTimeNanos()
  }

  /**
   * An attempt starts with `key`: `done` wrapped to record its answer's status or its failure. With
   * tracing on, the attempt's span is the `traceparent` set in `headers` (those sent upstream).
   */
  attempt<R extends Answer | Failed>(
    key: Key.Key,
    headers: Record<string, string | number>,
    done: (result: R) => void
  ): (result: R) => void {
    this.trace?.startAttempt(key, headers)
    const a: Attempt = {
      key: key.id,
      start: this.clock.unsafeCurrentTimeNanos(),
      status: undefined,
      outcome: "pending",
      error: undefined,
      action: undefined,
      message: undefined,
      firstByteMs: undefined,
      latencyMs: undefined
    }
    this.attempts.push(a)
    return (result) => {
      const at = ms(a.start, this.clock.unsafeCurrentTimeNanos())
      if (result._tag === "Answer") {
        a.status = result.status
        a.firstByteMs = at
        this.stream = result.stream
      } else {
        a.status = result.answer?.status
        this.failed(a, result.error, at)
      }
      this.trace?.status(a.status)
      if (result._tag === "Failed") this.trace?.failAttempt(result.error)
      done(result)
    }
  }

  private failed(a: Attempt, error: UpstreamError.UpstreamError, at: number) {
    a.outcome = "failure"
    a.latencyMs = at
    a.error = error._tag
    a.action = UpstreamError.disposition(error)
    a.message = error.message.length > MAX_MESSAGE ? error.message.slice(0, MAX_MESSAGE) : error.message
  }

  /** `settler` wrapped to record the verdict on the answer sent (its cost, or an in-band failure). */
  settler(settler: Settler): Settler {
    const a = this.attempts[this.attempts.length - 1]
    if (a === undefined) return settler
    const now = () => ms(a.start, this.clock.unsafeCurrentTimeNanos())
    return {
      unsafeSucceed: (cost, window) => {
        if (a.outcome === "pending") {
          a.outcome = "success"
          a.latencyMs = now()
          this.cost = cost
          this.trace?.endAttempt("success", cost)
        }
        settler.unsafeSucceed(cost, window)
      },
      unsafeFail: (error) => {
        if (a.outcome === "pending") {
          this.failed(a, error, now())
          this.trace?.failAttempt(error)
        }
        settler.unsafeFail(error)
      },
      unsafeCancel: () => {
        if (a.outcome === "pending") {
          a.outcome = "cancelled"
          a.latencyMs = now()
          this.trace?.endAttempt("cancelled", undefined)
        }
        settler.unsafeCancel()
      }
    }
  }

  /** The balancer gave up (attempts ran out, no key, or the caller's own error). */
  giveUp(e: { readonly _tag: string; readonly reason?: unknown }): void {
    this.gaveUp = whyGaveUp(e)
  }

  /** The response closed: the spans end, and the line is written if its level is logged. */
  end(res: http.ServerResponse): void {
    const settings = settingsOf(this.engine.config)
    const finished = res.writableFinished
    const status = res.headersSent ? res.statusCode : 499
    this.trace?.end(status, finished, this.model, this.cost, this.gaveUp)
    const level: Level = !finished || status >= 400 ? "warn" : this.quiet ? "debug" : "info"
    if (!this.lines || !enabled(settings, level)) return
    const debug = settings.level === "debug"
    const failover: Array<string> = []
    const attempts = this.attempts.map((a) => {
      if (a.outcome === "failure" && a.action !== "fail") failover.push(a.error!)
      return {
        key: a.key,
        status: a.status ?? null,
        outcome: a.outcome,
        latencyMs: a.latencyMs ?? null,
        ...(a.error === undefined ? {} : { error: a.error, action: a.action, message: a.message }),
        ...(debug && a.firstByteMs !== undefined ? { firstByteMs: a.firstByteMs } : {})
      }
    })
    const req = this.req
    const line: Record<string, unknown> = {
      time: timeOf(this.clock),
      level,
      msg: "request",
      id: this.id,
      client: status === 401 ? null : clientOf(this.engine, req.headers.authorization, req.socket),
      method: req.method,
      route: this.route,
      model: this.model ?? null,
      stream: this.stream,
      status,
      outcome: finished ? (status < 400 ? "success" : "error") : "client_closed",
      attempts,
      failover,
      cost: this.cost ?? null,
      durationMs: ms(this.start, this.clock.unsafeCurrentTimeNanos())
    }
    if (this.gaveUp !== undefined) line.gaveUp = this.gaveUp
    // Why it was not a success: the gateway's own error code, or what the balancer gave up with,
    // or the last attempt's error.
    if (status >= 400 || !finished)
      line.reason =
        reasons.get(res) ??
        this.gaveUp ??
        this.attempts[this.attempts.length - 1]?.error ??
        (finished ? null : "client_closed")
    if (debug) {
      line.userAgent = req.headers["user-agent"] ?? null
      line.bytesIn = Number(req.headers["content-length"] ?? 0)
      line.remote = req.socket.remoteAddress ?? null
    }
    writeLine(JSON.stringify(line))
  }
}

/**
 * The request's record when request logging or tracing is on (its line is written and its span
 * ended when the response closes), else `undefined`.
 */
export const start = (
  engine: EngineState,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  id: string,
  route: string,
  quiet = false,
  traced = true
): RequestLog | undefined => {
  const lines = settingsOf(engine.config).requests
  const tracer = traced ? engine.built.tracer : undefined
  if (!lines && tracer === undefined) return undefined
  const trace =
    tracer === undefined ? undefined : new RequestTrace(tracer, engine.built.clock, req, route, id)
  const log = new RequestLog(engine, id, req, route, lines, trace, quiet)
  res.once("close", () => log.end(res))
  return log
}
