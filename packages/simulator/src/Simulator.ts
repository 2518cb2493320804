/**
 * An OpenRouter-compatible server on loopback, for tests, examples, the demo and the benchmarks.
 *
 * It answers chat completions (JSON and SSE with keep-alive comments), legacy completions,
 * embeddings, the Responses API (plain and streamed as `response.*` events), `GET /key`,
 * `/auth/key`, `/credits`, `/models`, `/models/{author}/{slug}` and `/generation` as
 * `openrouter-api.md` describes, for keys with credit caps and `limit_reset` periods, accounts
 * with request-rate windows, free-model limits and balances, injected faults and latency, and
 * records what it saw so a test can check a balancer from the outside. Money is kept in integer
 * nano-dollars inside and shown in USD on the wire. Built on raw `node:http` so it is never the
 * bottleneck of a benchmark; deterministic for a given seed as far as arrival order allows (each
 * key's fault script and random draws depend only on the order of that key's own requests).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/server.js"
import * as prng from "./internal/prng.js"
import type { AccountConfig, FaultKind, Faults, ModelConfig } from "./SimulatorConfig.js"
import { Config, KeyConfig } from "./SimulatorConfig.js"

/**
 * The configuration's Schemas and types, defined in `SimulatorConfig`.
 *
 * @since 0.1.0
 * @category Schemas
 */
export {
  AccountConfig,
  Config,
  FaultKind,
  FaultRates,
  Faults,
  KeyConfig,
  Latency,
  ModelConfig
} from "./SimulatorConfig.js"

/**
 * Invalid configuration, a port that could not be bound, or an update naming an unknown key
 * or account. Messages name keys by label, never by secret.
 *
 * @since 0.1.0
 * @category Errors
 */
export class SimulatorError extends Schema.TaggedError<SimulatorError>()("SimulatorError", {
  reason: Schema.Literal("InvalidConfig", "Listen", "UnknownKey"),
  message: Schema.String
}) {}

/**
 * What the simulator saw of one key since the last `resetStats`. `byOutcome` counts inference
 * requests (chat, completions, embeddings, responses) by status code (`"200"`, `"402"`, …) or
 * by fault (`"stall"`, `"reset"`, `"midstream"`); a stall that ends (`stallMs`) counts as
 * `"stall"` and then as its answer. `usage` and `limit` are the key's current state, not reset
 * by `resetStats`.
 *
 * @since 0.1.0
 * @category Models
 */
export interface KeyStats {
  readonly label: string
  readonly account: string
  readonly requests: number
  readonly byOutcome: Readonly<Record<string, number>>
  readonly inFlight: number
  readonly maxInFlight: number
  /** USD debited since the last reset. */
  readonly spend: number
  /** USD debited past the key's cap since the last reset (concurrent requests racing a small cap). */
  readonly overspend: number
  /** Answers whose debit went past the cap. */
  readonly overspentRequests: number
  readonly usage: number
  readonly limit: number | null
  /** What `GET /key` would answer as `limit_remaining` now (null: unlimited). */
  readonly limitRemaining: number | null
  /** The smaller of `limitRemaining` and the account's balance when enforced (null: unbounded). */
  readonly spendable: number | null
  readonly revoked: boolean
  /** `GET /key` and `/auth/key` lookups (they cost nothing). */
  readonly keyLookups: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface AccountStats {
  readonly requests: number
  readonly rateLimited: number
  /** All-time USD spent by the account's keys (state, not reset by `resetStats`). */
  readonly usage: number
  /** `totalCredits - usage` when the account's credits are enforced, else null. */
  readonly balance: number | null
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Stats {
  /** Inference requests received (every route), including those with no valid key. */
  readonly requests: number
  readonly byOutcome: Readonly<Record<string, number>>
  /** Inference requests by route: `chat`, `completions`, `embeddings`, `responses`. */
  readonly byRoute: Readonly<Record<string, number>>
  readonly inFlight: number
  readonly maxInFlight: number
  /** Chat requests with a missing or unknown key. */
  readonly unauthenticated: number
  readonly spend: number
  readonly overspend: number
  readonly keys: Readonly<Record<string, KeyStats>>
  readonly accounts: Readonly<Record<string, AccountStats>>
}

/**
 * A simulated key as a client would configure it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface SimulatedKey {
  readonly label: string
  readonly account: string
  readonly secret: Redacted.Redacted<string>
}

/**
 * A change to a key at run time. `faults` replaces the key's faults and restarts its script.
 *
 * @since 0.1.0
 * @category Models
 */
export interface KeyUpdate {
  readonly revoked?: boolean
  readonly limit?: number | null
  readonly usage?: number
  readonly limitReset?: "daily" | "weekly" | "monthly" | null
  /** Length of the `limitReset` period in ms; a change starts a new period now. */
  readonly resetPeriodMs?: number
  readonly management?: boolean
  readonly keyLimitStatus?: 402 | 403
  readonly faults?: Faults
}

/**
 * The running simulator.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Handle {
  /** e.g. `http://127.0.0.1:40123` */
  readonly url: string
  /** `url` + `/api/v1`, the base URL a client uses. */
  readonly baseUrl: string
  readonly port: number
  readonly keys: ReadonlyArray<SimulatedKey>
  readonly stats: Effect.Effect<Stats>
  readonly resetStats: Effect.Effect<void>
  readonly updateKey: (label: string, update: KeyUpdate) => Effect.Effect<void, SimulatorError>
  readonly setFaultScript: (
    label: string,
    script: ReadonlyArray<FaultKind>,
    options?: { readonly loop?: boolean }
  ) => Effect.Effect<void, SimulatorError>
  /**
   * Rolls the key's `limitReset` period over now, as if the period had ended: the period's spend
   * goes back to 0, so its whole `limit` is available again.
   */
  readonly resetCredit: (label: string) => Effect.Effect<void, SimulatorError>
  /** Adds a key, or fails if its label or secret is taken. */
  readonly addKey: (key: KeyConfig) => Effect.Effect<SimulatedKey, SimulatorError>
  /** Changes (or creates) an account's rate limit and credits. */
  readonly updateAccount: (name: string, update: AccountConfig) => Effect.Effect<void>
  /**
   * Moves the simulator's clock forward (wall clock plus an offset), so a test can cross a UTC
   * midnight: `limit_reset` periods, free-model days and rate windows all follow it, and so do
   * `X-RateLimit-Reset` values.
   */
  readonly advanceClock: (ms: number) => Effect.Effect<void>
  /** The most recent inference requests, oldest first (at most the config's `requestsKept`). */
  readonly recentRequests: Effect.Effect<ReadonlyArray<SeenRequest>>
}

/**
 * An inference request as the simulator received it: which route and key, and the headers a
 * gateway is expected to pass on or set (tracing, request id, attribution). Never the
 * `Authorization` header.
 *
 * @since 0.1.0
 * @category Models
 */
export interface SeenRequest {
  readonly route: string
  /** The key's label; undefined for a missing or unknown key. */
  readonly key: string | undefined
  /** On the simulator's clock (epoch ms). */
  readonly at: number
  /** Those present of `traceparent`, `tracestate`, `x-request-id`, `http-referer`, `x-title`, `x-openrouter-title`, `user-agent`. */
  readonly headers: Readonly<Record<string, string>>
}

/**
 * @since 0.1.0
 * @category Context
 */
export class Simulator extends Context.Tag("@or-balancer/simulator/Simulator")<Simulator, Handle>() {}

/**
 * The built-in price table (USD per million tokens), used when the config names no models.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const defaultModels: ReadonlyArray<ModelConfig> = internal.defaultModels

/**
 * A fake secret that looks like a real one ("sk-or-v1-" + 64 hex), fixed by seed and index.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const simulatedSecret: (seed: number, index: number) => string = prng.simulatedSecret

/**
 * The demo's pool: two accounts, five keys. On account `acme` (generous rate): `primary`
 * (50 USD cap), `small-cap` (0.01 USD, a few dozen to a few hundred answers depending on the
 * model), `revoked` (401) and `flaky` (about a quarter of its requests fail: 5xx, resets, stalls
 * and mid-stream errors). On account `globex`: `rate-limited`, whose account allows 20
 * requests per 2 seconds. The accounts hold 200 and 50 USD of credits (enforced). Latency is
 * lognormal (median 15 ms, p99 120 ms).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const demoPool = (seed = 42): Config => ({
  seed,
  keys: [
    {
      label: "primary",
      account: "acme",
      secret: prng.simulatedSecret(seed, 0),
      limit: 50,
      limitReset: "monthly"
    },
    {
      label: "small-cap",
      account: "acme",
      secret: prng.simulatedSecret(seed, 1),
      limit: 0.01,
      limitReset: null
    },
    { label: "revoked", account: "acme", secret: prng.simulatedSecret(seed, 2), limit: 50, revoked: true },
    {
      label: "flaky",
      account: "acme",
      secret: prng.simulatedSecret(seed, 3),
      limit: 50,
      faults: {
        rates: {
          "500": 0.08,
          "502": 0.04,
          "503": 0.04,
          "408": 0.02,
          reset: 0.03,
          stall: 0.01,
          midstream: 0.03
        }
      }
    },
    { label: "rate-limited", account: "globex", secret: prng.simulatedSecret(seed, 4), limit: 50 }
  ],
  accounts: {
    acme: { rpm: 1_000_000, totalCredits: 200 },
    globex: { rpm: 20, windowMs: 2_000, totalCredits: 50 }
  },
  latency: { kind: "lognormal", median: 15, p99: 120 },
  stream: { keepAlives: 1, chunks: 4, chunkIntervalMs: 2 }
})

/**
 * The demo pool with seed 42.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const defaultConfig: Config = demoPool()

const invalid = (message: string) => new SimulatorError({ reason: "InvalidConfig", message })

/**
 * Decodes a configuration from JSON-like input (e.g. a parsed config file).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const decodeConfig = (input: unknown): Effect.Effect<Config, SimulatorError> =>
  Schema.decodeUnknown(Config)(input, { errors: "all", onExcessProperty: "error" }).pipe(
    // The formatter prints paths and expectations; a secret is a string so its value is not shown
    // by a `Union(String, Redacted)` mismatch, but scrub anything key-shaped to be sure.
    Effect.mapError((e) =>
      invalid(ParseResult.TreeFormatter.formatErrorSync(e).replace(/sk-or-[A-Za-z0-9_\-.]*/g, "sk-or-…"))
    )
  )

/**
 * Starts the simulator on 127.0.0.1 (port 0 by default: a random free port). The server and
 * every open connection are closed when the scope closes.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (config: Config): Effect.Effect<Handle, SimulatorError, Scope.Scope> =>
  Effect.gen(function* () {
    const decoded = yield* decodeConfig(config)
    const core = yield* Effect.try({
      try: () => internal.makeCore(decoded),
      catch: (e) => invalid(e instanceof Error ? e.message : String(e))
    })
    const server = yield* Effect.acquireRelease(
      Effect.async<internal.Running, SimulatorError>((resume) => {
        internal.listen(core, decoded.port ?? 0, (result) =>
          resume(
            result._tag === "Right"
              ? Effect.succeed(result.right)
              : Effect.fail(new SimulatorError({ reason: "Listen", message: result.left }))
          )
        )
      }),
      (running) => Effect.async<void>((resume) => running.close(() => resume(Effect.void)))
    )
    const url = `http://127.0.0.1:${server.port}`
    const unknownKey = (label: string) =>
      new SimulatorError({ reason: "UnknownKey", message: `no simulated key labelled "${label}"` })
    const handle: Handle = {
      url,
      baseUrl: `${url}/api/v1`,
      port: server.port,
      get keys() {
        return core.simulatedKeys()
      },
      stats: Effect.sync(() => core.stats()),
      resetStats: Effect.sync(() => core.resetStats()),
      updateKey: (label, update) =>
        Effect.try({
          try: () => core.updateKey(label, update),
          catch: (e) => invalid(e instanceof Error ? e.message : String(e))
        }).pipe(Effect.flatMap((found) => (found ? Effect.void : Effect.fail(unknownKey(label))))),
      resetCredit: (label) =>
        Effect.suspend(() => (core.resetCredit(label) ? Effect.void : Effect.fail(unknownKey(label)))),
      setFaultScript: (label, script, options) =>
        Effect.suspend(() =>
          core.setScript(label, script, options?.loop) ? Effect.void : Effect.fail(unknownKey(label))
        ),
      addKey: (key) =>
        Schema.decodeUnknown(KeyConfig)(key).pipe(
          Effect.mapError(() => invalid("invalid key configuration")),
          Effect.flatMap((k) =>
            Effect.try({
              try: () => core.addKey(k),
              catch: (e) => invalid(e instanceof Error ? e.message : String(e))
            })
          )
        ),
      updateAccount: (name, update) => Effect.sync(() => core.updateAccount(name, update)),
      advanceClock: (ms) => Effect.sync(() => core.advanceClock(ms)),
      recentRequests: Effect.sync(() => core.recentRequests())
    }
    return handle
  })

/**
 * The simulator as a scoped layer providing {@link Simulator}.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (config: Config): Layer.Layer<Simulator, SimulatorError> =>
  Layer.scoped(Simulator, make(config))
