/**
 * The simulator's configuration: keys, accounts, models, latency and faults, as Schemas so a
 * JSON file decodes with errors that name the field. Re-exported by `Simulator`.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

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
 * - `stall`: never answers, until the client gives up (or, with `stallMs`, answers normally after it);
 * - `reset`: the connection is destroyed after the latency;
 * - `slow`: a normal answer whose bytes trickle (see `slowBody`);
 * - `midstream`: a streamed answer fails in-band after some content (a JSON request gets a 502);
 * - `errorfirst`: a 200 whose first and only event is the in-band error (a JSON request gets a
 *   200 whose body is an error object);
 * - `badjson`: a 200 whose body (or stream event) is not JSON, as a broken upstream proxy sends;
 * - `cut`: a streamed answer loses its connection after some content, with no error event and
 *   no end of stream (a JSON request gets a `reset`).
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
  "midstream",
  "errorfirst",
  "badjson",
  "cut"
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
  midstream: Schema.optional(Probability),
  errorfirst: Schema.optional(Probability),
  badjson: Schema.optional(Probability),
  cut: Schema.optional(Probability)
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
 * `stallMs` turns a `stall` into a long wait before a normal answer (default: it never ends).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Faults = Schema.Struct({
  script: Schema.optional(Schema.Array(FaultKind)),
  loop: Schema.optional(Schema.Boolean),
  rates: Schema.optional(FaultRates),
  latency: Schema.optional(Latency),
  stallMs: Schema.optional(NonNegative)
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
 * with `limit_source: "openrouter_key_limit"`, or with `keyLimitStatus: 403` the 403 "Key limit
 * exceeded" OpenRouter's guides describe, whose metadata carries `limit_source`, `scope`,
 * `limit_usd`, `spend_usd` and `resets_at` (default: the config's `keyLimitStatus`).
 * From `expiresAt` (an ISO date) on, the key answers 401 "This API key has expired".
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
 * once: past it, a short 402 with `limit_source: "openrouter_in_flight_budget"` and `Retry-After`;
 * a single request costing more than the whole budget gets a 402 with `openrouter_credits`.
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
 * - `requestsKept` 1 000: how many recent inference requests `recentRequests` remembers;
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
  requestsKept: Schema.optional(NonNegativeInt),
  keyLimitStatus: Schema.optional(Schema.Literal(402, 403))
})

/**
 * @since 0.1.0
 * @category Models
 */
export type Config = typeof Config.Type
