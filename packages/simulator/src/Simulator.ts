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

const NonNegative = Schema.Number.pipe(Schema.nonNegative(), Schema.finite())
const Positive = Schema.Number.pipe(Schema.positive(), Schema.finite())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const PositiveInt = Schema.Int.pipe(Schema.positive())
const Probability = Schema.Number.pipe(Schema.between(0, 1))

/**
 * Delay before the first byte of an answer: `fixed`, `uniform` in `[min, max]`, or `lognormal`
 * given its median and 99th percentile (all in milliseconds).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Latency = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("fixed"), ms: NonNegative }),
  Schema.Struct({ kind: Schema.Literal("uniform"), min: NonNegative, max: NonNegative }),
  Schema.Struct({ kind: Schema.Literal("lognormal"), median: Positive, p99: Positive })
)

/**
 * @since 0.1.0
 * @category Models
 */
export type Latency = typeof Latency.Type

/**
 * What one request to a key does:
 * - `ok`: a normal answer;
 * - `500`, `502`, `503`, `408`: that status with an OpenRouter error body (503 with `Retry-After`);
 * - `429`: a provider's rate limit (with `Retry-After`, without `X-RateLimit-*`);
 * - `402`: OpenRouter's short refusal for too much spend in flight (`limit_source`
 *   `openrouter_in_flight_budget`, with `Retry-After`);
 * - `stall`: never answers, until the client gives up;
 * - `reset`: the connection is destroyed after the latency;
 * - `slow`: a normal answer whose bytes trickle (see `slowBody`);
 * - `midstream`: a streamed answer fails in-band after some content (a JSON request gets a 502).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const FaultKind = Schema.Literal(
  "ok",
  "500",
  "502",
  "503",
  "408",
  "429",
  "402",
  "stall",
  "reset",
  "slow",
  "midstream"
)

/**
 * @since 0.1.0
 * @category Models
 */
export type FaultKind = typeof FaultKind.Type

/**
 * Per-request fault probabilities, drawn once per request in a fixed order.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const FaultRates = Schema.Struct({
  "500": Schema.optional(Probability),
  "502": Schema.optional(Probability),
  "503": Schema.optional(Probability),
  "408": Schema.optional(Probability),
  "429": Schema.optional(Probability),
  "402": Schema.optional(Probability),
  stall: Schema.optional(Probability),
  reset: Schema.optional(Probability),
  slow: Schema.optional(Probability),
  midstream: Schema.optional(Probability)
})

/**
 * @since 0.1.0
 * @category Models
 */
export type FaultRates = typeof FaultRates.Type

/**
 * Faults of a key. A `script` is played first, one entry per request that reaches the fault
 * stage (valid key, valid body, within rate and credit), exactly in order; then `rates` apply
 * (or the script starts over when `loop` is set). `latency` overrides the server-wide one.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Faults = Schema.Struct({
  script: Schema.optional(Schema.Array(FaultKind)),
  loop: Schema.optional(Schema.Boolean),
  rates: Schema.optional(FaultRates),
  latency: Schema.optional(Latency)
})

/**
 * @since 0.1.0
 * @category Models
 */
export type Faults = typeof Faults.Type

/**
 * A simulated key. The secret is fake, so it may be a plain string (as in a JSON file).
 * `limit` is the credit cap in USD (`null` or absent: unlimited); `usage` the USD already spent.
 * With a `limitReset`, the cap applies to each period's spend: when the period rolls over (at
 * UTC midnight, Monday's for weekly, the 1st's for monthly, as OpenRouter's do),
 * `limit_remaining` is back to the whole `limit`. `resetPeriodMs` replaces the calendar with a
 * short period counted from when the key was added, for tests. A key over its limit answers 402
 * with `limit_source: "openrouter_key_limit"`, or with `keyLimitStatus: 403` the bare 403
 * "Key limit exceeded" OpenRouter's guides describe (default: the config's `keyLimitStatus`).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const KeyConfig = Schema.Struct({
  secret: Schema.Union(Schema.String, Schema.RedactedFromSelf(Schema.String)),
  label: Schema.optional(Schema.NonEmptyTrimmedString),
  account: Schema.optional(Schema.NonEmptyTrimmedString),
  limit: Schema.optional(Schema.NullOr(NonNegative)),
  limitReset: Schema.optional(Schema.NullOr(Schema.Literal("daily", "weekly", "monthly"))),
  resetPeriodMs: Schema.optional(PositiveInt),
  usage: Schema.optional(NonNegative),
  revoked: Schema.optional(Schema.Boolean),
  management: Schema.optional(Schema.Boolean),
  keyLimitStatus: Schema.optional(Schema.Literal(402, 403)),
  isFreeTier: Schema.optional(Schema.Boolean),
  expiresAt: Schema.optional(Schema.NullOr(Schema.String)),
  faults: Schema.optional(Faults)
})

/**
 * @since 0.1.0
 * @category Models
 */
export type KeyConfig = typeof KeyConfig.Type

/**
 * An account: at most `rpm` inference requests per `windowMs` (default 60 000, a minute) over
 * all its keys, else OpenRouter's own 429. A window opens at the first request after the previous
 * window ended; `null` means no limit.
 *
 * `totalCredits` is the USD the account bought: when set, it is enforced (a request costing more
 * than the balance `totalCredits - usage` gets 402 with `limit_source: "openrouter_credits"` on
 * every key of the account; a negative balance refuses free models too) and `GET /credits`
 * reports it; unset, nothing is enforced and `/credits` reports the sum of the keys' caps.
 * `inFlightBudget` (USD, default none) bounds the cost of the account's requests running at
 * once: past it, a short 402 with `limit_source: "openrouter_in_flight_budget"` and `Retry-After`.
 *
 * `:free` models also allow `freeRequestsPerMinute` (default 20, a window opened by the first
 * request) and `freeRequestsPerDay` per UTC day (default 50, or 1,000 once `totalCredits` is at
 * least 10), counted per account; `null` lifts either.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const AccountConfig = Schema.Struct({
  rpm: Schema.optional(Schema.NullOr(PositiveInt)),
  windowMs: Schema.optional(PositiveInt),
  totalCredits: Schema.optional(NonNegative),
  inFlightBudget: Schema.optional(Schema.NullOr(NonNegative)),
  freeRequestsPerMinute: Schema.optional(Schema.NullOr(PositiveInt)),
  freeRequestsPerDay: Schema.optional(Schema.NullOr(PositiveInt))
})

/**
 * @since 0.1.0
 * @category Models
 */
export type AccountConfig = typeof AccountConfig.Type

/**
 * A model and its prices in USD per million tokens, plus an optional USD price per request. An
 * id ending in `:free` is a free model, with the free-model request limits.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const ModelConfig = Schema.Struct({
  id: Schema.NonEmptyTrimmedString,
  promptPrice: NonNegative,
  completionPrice: NonNegative,
  requestPrice: Schema.optional(NonNegative),
  contextLength: Schema.optional(PositiveInt)
})

/**
 * @since 0.1.0
 * @category Models
 */
export type ModelConfig = typeof ModelConfig.Type

/**
 * The whole configuration. Everything but `keys` has a default:
 * - `seed` 1; `port` 0 (a free port); `models` {@link defaultModels};
 * - `defaultCompletionTokens` 32 (used when a request has no `max_tokens`);
 * - `latency` fixed 0; `faults` none (a key's own `faults` replace these);
 * - `stream`: 1 keep-alive comment, 4 content chunks, 0 ms between chunks;
 * - `slowBody`: 16 bytes every 5 ms; `retryAfterSeconds` 1; `generationsKept` 10 000;
 * - `keyLimitStatus` 402: how a key over its own limit answers (see {@link KeyConfig}).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Config = Schema.Struct({
  seed: Schema.optional(Schema.Int),
  port: Schema.optional(NonNegativeInt),
  keys: Schema.Array(KeyConfig),
  accounts: Schema.optional(Schema.Record({ key: Schema.String, value: AccountConfig })),
  models: Schema.optional(Schema.Array(ModelConfig)),
  defaultCompletionTokens: Schema.optional(PositiveInt),
  latency: Schema.optional(Latency),
  faults: Schema.optional(Faults),
  stream: Schema.optional(
    Schema.Struct({
      keepAlives: Schema.optional(NonNegativeInt),
      chunks: Schema.optional(PositiveInt),
      chunkIntervalMs: Schema.optional(NonNegative)
    })
  ),
  slowBody: Schema.optional(
    Schema.Struct({ bytesPerWrite: Schema.optional(PositiveInt), intervalMs: Schema.optional(NonNegative) })
  ),
  retryAfterSeconds: Schema.optional(NonNegativeInt),
  generationsKept: Schema.optional(PositiveInt),
  keyLimitStatus: Schema.optional(Schema.Literal(402, 403))
})

/**
 * @since 0.1.0
 * @category Models
 */
export type Config = typeof Config.Type

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
 * requests (chat, completions, embeddings, responses) by status code (`"200"`, `"402"`, …) or by fault (`"stall"`, `"reset"`,
 * `"midstream"`). `usage` and `limit` are the key's current state, not reset by `resetStats`.
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
}

/**
 * @since 0.1.0
 * @category Context
 */
export class Simulator extends Context.Tag("@or-balancer/http/Simulator")<Simulator, Handle>() {}

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
 * requests per 2 seconds. Latency is lognormal (median 15 ms, p99 120 ms).
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
      advanceClock: (ms) => Effect.sync(() => core.advanceClock(ms))
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
