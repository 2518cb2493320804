/**
 * What the server holds: per configuration an engine (its runtime, tokens and upstream pools,
 * swapped whole on a reload), and the server's own counts for drain and reload.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as v8 from "node:v8"
import type * as GatewayConfig from "../GatewayConfig.js"
import { digest } from "./auth.js"
import type * as Clients from "./clients.js"
import type * as ClientsFleet from "./clientsFleet.js"
import type * as Prices from "./prices.js"
import type * as Engine from "./engine.js"
import type * as Forecast from "./forecast.js"
import type { Upstream } from "./upstream.js"

/** One configuration's runtime, tokens and upstream pools. */
export interface EngineState {
  readonly config: GatewayConfig.GatewayConfig
  readonly built: Engine.Built
  readonly fork: <A, E>(effect: Effect.Effect<A, E, Engine.EngineServices>) => Fiber.RuntimeFiber<A, E>
  /** Digests of the flat tokens, then of the clients' tokens. */
  readonly tokens: ReadonlyArray<Buffer>
  /** The client of each token of `tokens` (undefined for a flat token); empty when there are no clients. */
  readonly owners: ReadonlyArray<GatewayConfig.ClientConfig | undefined>
  /** Per client, its spend, reservations and rate window: shared by the engines of one gateway. */
  readonly clientLedger: Clients.Ledger
  /** Per client, what this replica keeps beside Redis (used only with a `redis` section). */
  readonly clientFleet: ClientsFleet.State
  /** The model price table reservations are priced from: shared by the engines of one gateway. */
  readonly prices: Prices.Table
  readonly upstreams: Map<string, Upstream>
  active: number
  retired: boolean
}

export const makeEngineState = (
  config: GatewayConfig.GatewayConfig,
  built: Engine.Built,
  clientLedger: Clients.Ledger,
  clientFleet: ClientsFleet.State,
  prices: Prices.Table
): EngineState => ({
  config,
  built,
  fork: Runtime.runFork(built.runtime),
  tokens: [...config.tokens, ...config.clients.map((c) => c.token)].map((t) => digest(Redacted.value(t))),
  owners: config.clients.length === 0 ? [] : [...config.tokens.map(() => undefined), ...config.clients],
  clientLedger,
  clientFleet,
  prices,
  upstreams: new Map(),
  active: 0,
  retired: false
})

/** Closes the engine's upstream connections (called once no request uses it) and its layer scope. */
export const disposeEngine = (engine: EngineState): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.sync(() => {
      for (const u of engine.upstreams.values()) u.dispatcher.destroy().catch(() => undefined)
    }),
    Scope.close(engine.built.scope, Exit.void)
  )

export interface ServerState {
  engine: EngineState
  active: number
  draining: boolean
  generation: number
  readonly idle: Set<() => void>
  readonly onRetired: (engine: EngineState) => void
  /** Each key's spend over time, for the credit forecasts. */
  readonly samples: Forecast.Samples
  /** Per client, the requests already added to its `/metrics` counter. */
  readonly clientRequestsReported: Map<string, number>
}

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
