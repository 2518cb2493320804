/**
 * The gateway's config file as written: one Schema per section. `GatewayConfig` decodes it, reads
 * the environment variables it names and fills in defaults.
 */
import * as Key from "@or-balancer/core/Key"
import * as Schema from "effect/Schema"
import * as Struct from "effect/Struct"
import * as ConfigIssues from "./configIssues.js"

export const PositiveInt = Key.PositiveInt
export const NonNegativeInt = Schema.Int.pipe(
  Schema.nonNegative({ message: () => "must be a non-negative integer" })
)
export const EnvName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    message: () => "must be the name of an environment variable (letters, digits, _)"
  })
)
export const Ratio = Schema.Number.pipe(Schema.between(0, 1, { message: () => "must be between 0 and 1" }))

/**
 * @since 0.1.0
 * @category Schemas
 */
export const KeyEntry = Schema.Struct({
  id: Schema.NonEmptyTrimmedString,
  /** The environment variable holding the secret. */
  secretEnv: EnvName,
  // The rest as core's `KeyInput` has them, so the file accepts exactly what `Key.decode` does.
  ...Struct.omit(Key.KeyInput.fields, "id", "secret")
})

/**
 * One entry of the strategy stack. Base strategies: `round-robin`, `weighted`, `random`,
 * `weighted-random`, `least-busy`, `credit-aware`. Decorators (need an entry after them):
 * `account-pacing` (each account admits only what its rate window is known to admit, learned
 * from OpenRouter's 429s), `health-aware`, `concurrency-limited`, `threshold`, `sticky` (the same `session_id` or
 * `prompt_cache_key` goes to the same key), `by-model` (routes by the request's model: each route
 * a model pattern such as `anthropic/*` and optionally the key ids that serve it; routes share the
 * strategy below, and a model no route matches is refused with 400).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const StrategyEntry = Schema.Union(
  Schema.Struct({ name: Schema.Literal("round-robin") }),
  Schema.Struct({ name: Schema.Literal("weighted") }),
  Schema.Struct({ name: Schema.Literal("random") }),
  Schema.Struct({ name: Schema.Literal("weighted-random") }),
  Schema.Struct({ name: Schema.Literal("least-busy") }),
  Schema.Struct({
    name: Schema.Literal("credit-aware"),
    estimate: Schema.optional(Schema.NonNegative),
    ttlMs: Schema.optional(PositiveInt)
  }),
  Schema.Struct({
    name: Schema.Literal("health-aware"),
    failureThreshold: Schema.optional(PositiveInt),
    baseCooldownMs: Schema.optional(PositiveInt),
    maxCooldownMs: Schema.optional(PositiveInt),
    recovery: Schema.optional(Schema.Literal("trial", "probe")),
    panicThreshold: Schema.optional(Ratio)
  }),
  Schema.Struct({ name: Schema.Literal("concurrency-limited"), defaultMax: Schema.optional(PositiveInt) }),
  Schema.Struct({ name: Schema.Literal("account-pacing"), maxWaitMs: Schema.optional(PositiveInt) }),
  Schema.Struct({
    name: Schema.Literal("threshold"),
    threshold: Schema.NonNegative,
    stay: Schema.optional(Schema.Boolean),
    estimate: Schema.optional(Schema.NonNegative),
    ttlMs: Schema.optional(PositiveInt)
  }),
  Schema.Struct({ name: Schema.Literal("sticky") }),
  Schema.Struct({
    name: Schema.Literal("by-model"),
    routes: Schema.NonEmptyArray(
      Schema.Struct({
        pattern: Schema.NonEmptyTrimmedString,
        keys: Schema.optional(Schema.NonEmptyArray(Schema.NonEmptyTrimmedString))
      })
    )
  })
)

/**
 * @since 0.1.0
 * @category Models
 */
export type StrategyEntry = typeof StrategyEntry.Type

/**
 * The names that wrap an inner strategy.
 *
 * @since 0.1.0
 * @category Models
 */
export const decorators: ReadonlySet<StrategyEntry["name"]> = new Set([
  "account-pacing",
  "health-aware",
  "concurrency-limited",
  "threshold",
  "sticky",
  "by-model"
])

/**
 * A named client (a virtual key): its own token, and optionally a budget per UTC period (reserved
 * before each call: the request's worst case from the model price table, OpenRouter's `/models`
 * prices × the prompt and `max_tokens`; or the client's own `reserveUsd` per request, or
 * `max_tokens` × `usdPerToken`, when it sets them; $0.01 for a model the table does not know), a
 * rate in requests per minute and the model patterns it may use (`openai/*`, exact ids).
 *
 * @since 0.3.0
 * @category Schemas
 */
export const ClientEntry = Schema.Struct({
  id: Schema.NonEmptyTrimmedString,
  /** The environment variable holding the client's token. */
  tokenEnv: EnvName,
  budget: Schema.optional(
    Schema.Struct({
      usd: Schema.NonNegative,
      period: Schema.Literal("daily", "weekly", "monthly"),
      reserveUsd: Schema.optional(Schema.NonNegative),
      usdPerToken: Schema.optional(Schema.NonNegative)
    })
  ),
  rpm: Schema.optional(PositiveInt),
  models: Schema.optional(Schema.NonEmptyArray(Schema.NonEmptyTrimmedString))
})

/**
 * The file, as written.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const File = Schema.Struct({
  listen: Schema.optional(
    Schema.Struct({
      host: Schema.optional(Schema.NonEmptyTrimmedString),
      port: Schema.optional(NonNegativeInt.pipe(Schema.lessThanOrEqualTo(65535)))
    })
  ),
  baseUrl: Schema.optional(
    Schema.String.pipe(
      Schema.filter(ConfigIssues.isHttpUrl, {
        message: () => "must be an http(s) URL, such as https://openrouter.ai/api/v1"
      })
    )
  ),
  /** Environment variables holding the gateway tokens clients must present. */
  tokens: Schema.optional(Schema.Array(EnvName)),
  /** Named clients, each with its own token, budget, rate and models. */
  clients: Schema.optional(Schema.Array(ClientEntry)),
  /** Serve without tokens. Must be said explicitly. */
  anonymous: Schema.optional(Schema.Boolean),
  accounts: Schema.optional(
    Schema.Record({
      key: Schema.String,
      // The account's management key (the variable holding it): its balance bounds every key's credit.
      value: Schema.Struct({ managementKeyEnv: Schema.optional(EnvName) })
    })
  ),
  keys: Schema.Array(KeyEntry),
  strategy: Schema.optional(Schema.Array(StrategyEntry)),
  retry: Schema.optional(
    Schema.Struct({
      maxAttempts: Schema.optional(PositiveInt),
      baseDelayMs: Schema.optional(PositiveInt),
      maxDelayMs: Schema.optional(PositiveInt),
      budget: Schema.optional(
        Schema.Union(
          Schema.Literal(false),
          Schema.Struct({ ratio: Ratio, minPerSecond: NonNegativeInt, windowMs: PositiveInt })
        )
      )
    })
  ),
  deadlines: Schema.optional(
    Schema.Struct({
      /** How long a request may wait for a key to become eligible. */
      keyWaitMs: Schema.optional(PositiveInt),
      /**
       * The whole request, every attempt and wait included, until its answer starts (default
       * 60 s, under common client timeouts); then a 504 naming the keys tried.
       */
      requestMs: Schema.optional(PositiveInt),
      /** How long one attempt may wait for the upstream's response headers before failing over. */
      headersMs: Schema.optional(PositiveInt),
      /** How long a caller may take to send its request (head and body); then a 408. */
      bodyMs: Schema.optional(PositiveInt),
      /**
       * Longest silence between two body chunks of an answer (the key's Timeout); while the caller
       * stops reading, the longest it may (then the stream is cut with no verdict on the key).
       */
      bodyIdleMs: Schema.optional(PositiveInt),
      /** How long shutdown waits for requests in flight. */
      drainMs: Schema.optional(NonNegativeInt)
    })
  ),
  bodyLimitBytes: Schema.optional(PositiveInt),
  /**
   * Hedged requests against stalls (see `internal/hedge.ts`): when a first attempt has no response
   * headers after `afterMs` (absent: learned, three times the p95 of recent answers, at least `minMs`),
   * one more attempt starts on another key and the first answer wins. At most `ratio` of requests
   * (with `burst` in hand) are hedged. `false` turns it off.
   */
  hedge: Schema.optional(
    Schema.Union(
      Schema.Literal(false),
      Schema.Struct({
        afterMs: Schema.optional(PositiveInt),
        minMs: Schema.optional(PositiveInt),
        ratio: Schema.optional(Ratio),
        burst: Schema.optional(PositiveInt)
      })
    )
  ),
  /**
   * Replicas sharing limits and health on one Redis (`@or-balancer/redis`). Absent: this
   * process's state only, as fast as ever.
   */
  redis: Schema.optional(
    Schema.Struct({
      url: Schema.String.pipe(
        Schema.filter((u) => /^rediss?:\/\/[^@/]+(\/\d+)?$/.test(u), {
          message: () => "must be a URL such as redis://127.0.0.1:6379/0 (a password goes in passwordEnv)"
        })
      ),
      /** The environment variable holding Redis's password. */
      passwordEnv: Schema.optional(EnvName),
      /** This replica's id (default: random). */
      replicaId: Schema.optional(Schema.NonEmptyString),
      /** The fleet's size: without Redis each replica runs on cap ÷ replicas. Default 1. */
      replicas: Schema.optional(PositiveInt),
      /** Lease lifetime: a dead replica's capacity returns within it. Default 3000. */
      leaseTtlMs: Schema.optional(PositiveInt),
      /**
       * How long a Redis command may go unanswered before the replica falls back to its local
       * share (default 100). A named client's reservation waits for it on the request's path.
       */
      commandTimeoutMs: Schema.optional(PositiveInt)
    })
  ),
  /** `GET /v1/models` and `/v1/models/{id}` need no gateway token (they are public on OpenRouter). */
  publicModels: Schema.optional(Schema.Boolean),
  /** Who may open `/dashboard` (and, with `protect`, `/status` and `/metrics`). */
  admin: Schema.optional(
    Schema.Struct({
      /** Environment variables holding the admin tokens. Default: the gateway tokens. */
      tokens: Schema.optional(Schema.Array(EnvName)),
      /** `/status` and `/metrics` need an admin token too (cookie or `Authorization: Bearer`). */
      protect: Schema.optional(Schema.Boolean)
    })
  ),
  /** JSON lines on stdout: one per request (`requests`), and events (ejections, reloads...). */
  log: Schema.optional(
    Schema.Struct({
      requests: Schema.optional(Schema.Boolean),
      level: Schema.optional(Schema.Literal("debug", "info", "warn", "error"))
    })
  )
})

/**
 * @since 0.1.0
 * @category Models
 */
export type File = typeof File.Type
