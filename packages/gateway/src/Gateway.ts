/**
 * An OpenAI-compatible gateway in front of the key pool: programs in any language use the
 * balancer by changing their base URL.
 *
 * Routes: `POST /v1/chat/completions` and `/api/v1/chat/completions` (JSON and SSE, failover
 * while nothing has reached the client), `GET /v1/models` and
 * `/api/v1/models` (passed through), `GET /healthz`, `GET /metrics` (Prometheus text from core's
 * `Monitor` metrics, labelled by key id), `GET /status` (JSON) and `GET /dashboard` (a live status
 * page). Chat and models need a gateway token (`Authorization: Bearer …`); the dashboard an admin
 * token (`admin.tokens`, default the gateway tokens), which `/dashboard?token=…` trades for a cookie.
 * Health, metrics and status are open unless `admin.protect` is set, so bind the gateway to a
 * private address.
 *
 * Named clients (`clients` in the config) each present their own token and may have a budget per
 * UTC period, a rate and model patterns: a budget's estimate is reserved before the request is
 * forwarded and settled with the answer's cost, so concurrent requests never overshoot it (with a
 * `redis` section, over every replica: `internal/clientsFleet.ts`). Over budget or rate: 429 with the
 * client's own `code` and `Retry-After`; a model outside its patterns: 403 naming it. `/status`
 * and `/metrics` show per-client usage, and per key and account a credit forecast (burn rate,
 * exhaustion, `limit_reset`).
 *
 * Answers are read as `@or-balancer/http`'s `Protocol` reads them, the same as the client's. A
 * JSON answer is read whole and judged before anything reaches the client (an HTML page or a body
 * cut short fails over); a stream is held until its first event (an error there fails over), then
 * passed on as it comes, with no replay after. A key's problem (401, 402, a key limit) is never
 * forwarded: the caller gets the gateway's own 503 naming why and when the first key comes back.
 * No key secret reaches a client: every header and byte passed on is scrubbed. Every
 * `Retry-After` the gateway sends is its own, at most 300 s.
 *
 * The hot path is a raw `node:http` handler with undici's keep-alive pools upstream (one handler
 * object per call, the answer's body handed on chunk by chunk with backpressure); Effect decides (selection, leases, outcome reports, retries) on a
 * prebuilt runtime.
 * `/metrics` and `/status` are Effect programs run on the same runtime. See `design.md`, "The
 * gateway's hot path", for the measurements behind this split.
 *
 * Starting a gateway turns off V8's allocation-site pretenuring for the process (a GC heuristic
 * that per-request fibers defeat; about 30% less CPU per request without it, measured).
 *
 * @since 0.1.0
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import type * as GatewayConfig from "./GatewayConfig.js"
import type * as Admin from "./internal/admin.js"
import type { Status } from "./internal/statusModel.js"
import * as Clients from "./internal/clients.js"
import * as ClientsFleet from "./internal/clientsFleet.js"
import * as Engine from "./internal/engine.js"
import * as Events from "./internal/events.js"
import * as Forecast from "./internal/forecast.js"
import * as Handler from "./internal/handler.js"
import * as Log from "./internal/log.js"
import * as Prices from "./internal/prices.js"
import * as Prometheus from "./internal/prometheus.js"
import * as Respond from "./internal/respond.js"
import * as State from "./internal/state.js"
import * as StatusView from "./internal/status.js"

/**
 * The gateway could not start (the address is taken) or a configuration could not be applied.
 * The message never holds a secret.
 *
 * @since 0.1.0
 * @category Errors
 */
export class GatewayError extends Schema.TaggedError<GatewayError>()("GatewayError", {
  reason: Schema.Literal("Listen", "Config"),
  message: Schema.String
}) {}

/**
 * The `/status` answer and its rows (declared in `internal/statusModel.ts`).
 *
 * @since 0.1.0
 * @category Models
 */
export type {
  AccountWindow,
  ClientStatus,
  CreditForecast,
  KeyHealth,
  KeyStatus,
  Status
} from "./internal/statusModel.js"

/**
 * A running gateway.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Gateway {
  /** e.g. `http://127.0.0.1:8080`; clients use `${url}/v1` (OpenAI) or `${url}/api/v1` (OpenRouter). */
  readonly url: string
  readonly port: number
  /**
   * Applies new keys, tokens, strategy stack, retry policy, deadlines and body limit. Requests in
   * flight finish on the configuration they started with; new requests take the new one. A config
   * that fails to build leaves the old one in place. The listen address is not changed by a reload.
   */
  readonly reload: (config: GatewayConfig.GatewayConfig) => Effect.Effect<void, GatewayError>
  readonly status: Effect.Effect<Status>
  /** The `/metrics` text. */
  readonly metrics: Effect.Effect<string>
  /** Requests being served now. */
  readonly inFlight: Effect.Effect<number>
  /**
   * Stops accepting, answers new requests on open connections with 503, waits for requests in
   * flight up to `deadline` (default the config's `deadlines.drainMs`), then closes every
   * connection. Also run when the gateway's scope closes.
   */
  readonly drain: (deadline?: Duration.DurationInput) => Effect.Effect<void>
}

/**
 * Tunes V8's garbage collector for a process that mostly serves the gateway: allocation-site
 * pretenuring off. A request's fiber lives one upstream round trip, long enough for V8 to start
 * allocating such objects straight into the old generation, where they die and keep young
 * objects alive through every scavenge. Off, the gateway's CPU per request fell by about 30 % in
 * `examples/bench/gateway.ts`. It changes only GC heuristics, but for the whole process, so
 * `make` does not do it: `or-balancer serve` does, and so may a program that is mostly a gateway.
 *
 * @since 0.1.0
 * @category Tuning
 */
export const tuneGc: Effect.Effect<void> = Effect.sync(State.tuneGc)

/**
 * Starts the gateway on the config's listen address (port 0: a free port). Closing the scope drains
 * it.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  config: GatewayConfig.GatewayConfig
): Effect.Effect<Gateway, GatewayError, Scope.Scope> =>
  Effect.gen(function* () {
    const monitor = yield* Monitor.make
    // Key ejections, probes and cooldowns are seen in the store's writes (events.ts).
    let observed: State.ServerState | undefined
    const store = Events.observe(yield* StateStore.makeMemory, () => observed)
    const provideShared = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.provideService(Monitor.Monitor, monitor),
        Effect.provideService(StateStore.StateStore, store)
      )
    // Client spend outlives a reload: a new config must not hand out a fresh budget.
    const clientLedger = Clients.makeLedger()
    const clientFleet = ClientsFleet.makeState()
    const prices = Prices.makeTable()
    const buildEngine = (c: GatewayConfig.GatewayConfig) =>
      provideShared(Engine.build(c)).pipe(
        Effect.map((built) => State.makeEngineState(c, built, clientLedger, clientFleet, prices)),
        Effect.mapError((e) => new GatewayError({ reason: "Config", message: e.message }))
      )
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const first = yield* buildEngine(config)
    const state: State.ServerState = {
      engine: first,
      active: 0,
      draining: false,
      generation: 1,
      idle: new Set(),
      // The last request on a replaced configuration has finished: release what it held.
      onRetired: (engine) => void runFork(State.disposeEngine(engine)),
      samples: Forecast.makeSamples(),
      clientRequestsReported: new Map()
    }
    observed = state
    // Reservations are priced from the models' prices (prices.ts), when a client's budget asks.
    yield* Prices.keep(prices, () => state.engine.config)
    // With Redis: clients' spend synced with the fleet's every second (clientsFleet.ts).
    yield* ClientsFleet.keepSynced(
      () => ({
        link: state.engine.built.fleet,
        clients: state.engine.config.clients,
        now: state.engine.built.clock.unsafeCurrentTimeMillis()
      }),
      clientFleet,
      clientLedger
    )
    const status = provideShared(StatusView.status(state))
    const admin: Admin.Admin = {
      metrics: provideShared(
        Effect.zipRight(StatusView.refreshGauges(state), Prometheus.render("or_balancer_"))
      ),
      status
    }
    // The forecasts' burn rates need spend samples even when nobody reads `/status`: one every 15 s.
    yield* StatusView.refreshGauges(state).pipe(
      provideShared,
      Effect.repeat(Schedule.spaced(Duration.seconds(15))),
      Effect.forkScoped
    )
    // `requireHostHeader: false`: the handler answers a missing Host itself, in JSON (Node's own
    // answer has no body).
    // `requestTimeout`: a caller has `deadlines.bodyMs` to send its request, head and body (F7: a
    // stalled body was held for Node's default 5 minutes); then a JSON 408 (`answerClientError`).
    // Node checks it every `connectionsCheckingInterval`, so that bounds the overshoot.
    const server = http.createServer(
      {
        keepAliveTimeout: 65_000,
        requireHostHeader: false,
        requestTimeout: config.deadlines.bodyMs,
        headersTimeout: config.deadlines.bodyMs,
        connectionsCheckingInterval: 1000
      },
      Handler.makeHandler(state, admin)
    )
    server.on("clientError", Respond.answerClientError)
    server.on("checkExpectation", Respond.answerExpectation)
    const port = yield* Effect.async<number, GatewayError>((resume) => {
      const onError = (e: Error) =>
        resume(
          Effect.fail(
            new GatewayError({
              reason: "Listen",
              message: `cannot listen on ${config.host}:${config.port}: ${e.message}`
            })
          )
        )
      server.once("error", onError)
      // A deep accept queue (Node's default is 511): a burst of new clients is queued, not reset.
      server.listen({ port: config.port, host: config.host, backlog: 4096 }, () => {
        server.off("error", onError)
        resume(Effect.succeed((server.address() as AddressInfo).port))
      })
    })
    const host = config.host.includes(":") ? `[${config.host}]` : config.host

    const waitIdle = Effect.async<void>((resume) => {
      if (state.active === 0) return resume(Effect.void)
      const f = () => {
        state.idle.delete(f)
        resume(Effect.void)
      }
      state.idle.add(f)
      return Effect.sync(() => state.idle.delete(f))
    })

    /** An event line, at the current configuration's log level (log.ts). */
    const logEvent = (level: Log.Level, name: string, fields: Record<string, unknown>) =>
      Log.event(Log.settingsOf(state.engine.config), state.engine.built.clock, level, name, fields)

    let drained = false
    const drain = (deadline?: Duration.DurationInput) =>
      Effect.gen(function* () {
        if (drained) return
        drained = true
        state.draining = true
        const started = state.engine.built.clock.unsafeCurrentTimeMillis()
        logEvent("info", "drain_start", { inFlight: state.active })
        server.close()
        server.closeIdleConnections()
        const ms =
          deadline === undefined ? state.engine.config.deadlines.drainMs : Duration.toMillis(deadline)
        // A finalizer of an interrupted fiber (SIGTERM) runs with that interruption pending: the
        // wait itself stays uninterruptible, or it would end at once and cut the requests in
        // flight. Only the racers are interruptible, so the loser is stopped when the other wins.
        yield* Effect.raceFirst(
          Effect.interruptible(waitIdle),
          Effect.interruptible(Effect.sleep(Duration.millis(ms)))
        )
        logEvent(state.active === 0 ? "info" : "warn", "drain_end", {
          cutOff: state.active,
          ms: state.engine.built.clock.unsafeCurrentTimeMillis() - started
        })
        Log.flush()
        server.closeAllConnections()
        yield* State.disposeEngine(state.engine)
      })
    yield* Effect.addFinalizer(() => drain())

    const reload = (c: GatewayConfig.GatewayConfig) =>
      Effect.gen(function* () {
        if (state.draining)
          return yield* new GatewayError({ reason: "Config", message: "the gateway is draining" })
        const next = yield* buildEngine(c).pipe(
          Effect.tapError((e) =>
            Effect.sync(() => logEvent("error", "reload_failed", { message: e.message }))
          )
        )
        server.requestTimeout = c.deadlines.bodyMs
        server.headersTimeout = c.deadlines.bodyMs
        const old = state.engine
        state.engine = next
        state.generation++
        old.retired = true
        logEvent("info", "reload", {
          generation: state.generation,
          keys: c.keys.map((k) => k.id),
          strategy: c.strategy.map((s) => s.name)
        })
        if (old.active === 0) yield* State.disposeEngine(old)
      })

    return {
      url: `http://${host}:${port}`,
      port,
      reload,
      status,
      metrics: admin.metrics,
      inFlight: Effect.sync(() => state.active),
      drain
    } satisfies Gateway
  })
