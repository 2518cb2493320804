/**
 * The gateway's configuration file, decoded with Schema.
 *
 * ```json
 * {
 *   "listen": { "host": "127.0.0.1", "port": 8080 },
 *   "baseUrl": "https://openrouter.ai/api/v1",
 *   "tokens": ["OR_GATEWAY_TOKEN"],
 *   "clients": [{ "id": "team-a", "tokenEnv": "OR_TEAM_A", "budget": { "usd": 5, "period": "daily" }, "rpm": 60, "models": ["openai/*"] }],
 *   "accounts": { "acme": {}, "globex": {} },
 *   "keys": [{ "id": "primary", "secretEnv": "OR_KEY_PRIMARY", "account": "acme", "weight": 2 }],
 *   "strategy": [{ "name": "health-aware", "failureThreshold": 3 }, { "name": "round-robin" }],
 *   "retry": { "maxAttempts": 4, "baseDelayMs": 25, "maxDelayMs": 2000 },
 *   "deadlines": { "keyWaitMs": 30000, "requestMs": 60000, "headersMs": 15000, "bodyMs": 30000, "bodyIdleMs": 300000, "drainMs": 15000 },
 *   "bodyLimitBytes": 1048576,
 *   "hedge": { "minMs": 200, "ratio": 0.1, "burst": 10 },
 *   "admin": { "tokens": ["OR_ADMIN_TOKEN"], "protect": true },
 *   "publicModels": false,
 *   "log": { "requests": true, "level": "info" }
 * }
 * ```
 *
 * Secrets never appear in the file: `secretEnv` and `tokens` name environment variables, read
 * through Effect's `Config` (so tests supply a `ConfigProvider`). The strategy stack is listed
 * outermost first; the last entry is the base strategy, every other one a decorator; with none,
 * {@link DEFAULT_STRATEGY} (account pacing › health-aware › round robin). A wrong
 * file fails with the path of the field at fault, e.g. `keys[1].weight: must be a positive integer`.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import type * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import * as ConfigIssues from "./internal/configIssues.js"
import { ClientEntry, decorators, File, KeyEntry, StrategyEntry } from "./internal/configFile.js"
import * as decoding from "./internal/configDecode.js"
import type { GatewayConfigError } from "./internal/configError.js"
import * as loading from "./internal/configLoad.js"

/**
 * The file's schemas, one per section.
 *
 * @since 0.1.0
 * @category Schemas
 */
export { ClientEntry, decorators, File, KeyEntry, StrategyEntry }

/**
 * A client's budget, defaults filled in.
 *
 * @since 0.3.0
 * @category Models
 */
export interface ClientBudget {
  readonly usd: number
  readonly period: "daily" | "weekly" | "monthly"
  readonly reserveUsd: number
  readonly usdPerToken: number | undefined
  /**
   * Reserve each request's worst case from the model price table (set when the client gives
   * neither `reserveUsd` nor `usdPerToken`); `reserveUsd` for a model the table does not know.
   */
  readonly priced?: boolean | undefined
}

/**
 * A named client with its token read. The token is never shown.
 *
 * @since 0.3.0
 * @category Models
 */
export interface ClientConfig {
  readonly id: string
  readonly token: Redacted.Redacted<string>
  readonly budget: ClientBudget | undefined
  readonly rpm: number | undefined
  readonly models: ReadonlyArray<string> | undefined
}

/**
 * The configuration with defaults filled in and secrets read.
 *
 * @since 0.1.0
 * @category Models
 */
export interface GatewayConfig {
  readonly host: string
  readonly port: number
  readonly baseUrl: string
  readonly tokens: ReadonlyArray<Redacted.Redacted<string>>
  /** Named clients (empty: none, and no per-client work on any request). */
  readonly clients: ReadonlyArray<ClientConfig>
  readonly keys: ReadonlyArray<Key.Key>
  readonly strategy: ReadonlyArray<StrategyEntry>
  readonly retry: {
    readonly maxAttempts: number
    readonly baseDelayMs: number
    readonly maxDelayMs: number
    readonly budget:
      false | { readonly ratio: number; readonly minPerSecond: number; readonly windowMs: number }
  }
  readonly deadlines: {
    readonly keyWaitMs: number
    readonly requestMs: number
    readonly headersMs: number
    readonly bodyMs: number
    readonly bodyIdleMs: number
    readonly drainMs: number
  }
  readonly bodyLimitBytes: number
  /** Hedged requests (`internal/hedge.ts`); absent (a config built by hand): the defaults. */
  readonly hedge?: HedgeConfig | false | undefined
  readonly redis:
    | {
        readonly url: string
        readonly password: Redacted.Redacted<string> | undefined
        readonly replicaId: string | undefined
        readonly replicas: number
        readonly leaseTtlMs: number
        /** Unanswered Redis commands fail after this long (then local shares); absent: 100 ms. */
        readonly commandTimeoutMs?: number | undefined
      }
    | undefined
  /** The model list is served without the gateway token. */
  readonly publicModels: boolean
  readonly admin: {
    /** Empty (an anonymous gateway with no admin tokens): the dashboard is open. */
    readonly tokens: ReadonlyArray<Redacted.Redacted<string>>
    readonly protect: boolean
  }
  /**
   * Logs on stdout, one JSON line each: a line per request when `requests` (default false), and
   * events (key ejections, cooldowns, probes, reloads, the drain) at or above `level` (default
   * `info` with request lines, else `warn`: failed requests, ejections, a drain that cut requests
   * off, a failed reload; `debug` adds detail). Optional, so a config built by hand needs none.
   */
  readonly log?: { readonly requests: boolean; readonly level: "debug" | "info" | "warn" | "error" }
  /** The environment variables `tokens` were read from, in order: the request log names a client by it. */
  readonly tokenNames?: ReadonlyArray<string>
  /**
   * Each account's management key (`accounts.<name>.managementKeyEnv`): the credit strategies bound
   * a key's credit by its account's balance (`GET /api/v1/credits`). Used for nothing else.
   */
  readonly managementKeys?: ReadonlyMap<string, Key.Key>
}

/**
 * When a first attempt with no response headers gets a second on another key.
 *
 * @since 0.3.0
 * @category Models
 */
export interface HedgeConfig {
  /** A fixed delay; undefined: three times the p95 of recent answers' latency, at least `minMs`. */
  readonly afterMs: number | undefined
  readonly minMs: number
  /** The most of all requests hedged, over time (a token bucket). */
  readonly ratio: number
  /** Hedges in hand at most (the bucket's size). */
  readonly burst: number
}

export {
  /**
   * The hedging defaults: learned delay, at least 200 ms, at most 10 % of requests, 10 in hand.
   *
   * @since 0.3.0
   * @category Constants
   */
  defaultHedge,
  /**
   * @since 0.1.0
   * @category Constructors
   */
  DEFAULT_BASE_URL,
  /**
   * The stack when the file names none: each account paced to the rate window its 429s taught,
   * sick keys taken out (3 failures in a row, or at once for a 401/402), round robin among the rest.
   *
   * @since 0.4.0
   * @category Constructors
   */
  DEFAULT_STRATEGY,
  /**
   * The default stack as the CLI's help names it.
   *
   * @since 0.4.0
   * @category Constructors
   */
  DEFAULT_STRATEGY_NAMES
} from "./internal/configDefaults.js"

export {
  /**
   * The configuration is wrong. `path` names the field (`keys[1].secretEnv`); the message never
   * holds a secret.
   *
   * @since 0.1.0
   * @category Errors
   */
  GatewayConfigError
} from "./internal/configError.js"

/**
 * Decodes a parsed JSON value and reads the secrets it names from the environment (through the
 * current `ConfigProvider`).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const decode: (input: unknown) => Effect.Effect<GatewayConfig, GatewayConfigError> = decoding.decode

/**
 * Parses JSON text, then {@link decode}s it. A parse error names the position only: the
 * text could hold something secret.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const parse: (text: string) => Effect.Effect<GatewayConfig, GatewayConfigError> = loading.parse

/**
 * What is legal but probably not meant, one line each: a `weight` or `maxConcurrency` that no
 * strategy of the stack reads (round robin serves every key in turn whatever its weight).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const warnings = (config: GatewayConfig): ReadonlyArray<string> =>
  ConfigIssues.unreadFields(
    config.strategy.map((s) => s.name),
    config.keys
  )
