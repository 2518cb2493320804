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
import * as Key from "@or-balancer/core/Key"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as ConfigIssues from "./internal/configIssues.js"
import { readManagementKeys } from "./internal/managementKeys.js"
import { ClientEntry, decorators, File, KeyEntry, StrategyEntry } from "./internal/configFile.js"

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

/**
 * The hedging defaults: learned delay, at least 500 ms, at most 10 % of requests, 10 in hand.
 *
 * @since 0.3.0
 * @category Constants
 */
export const defaultHedge: HedgeConfig = { afterMs: undefined, minMs: 200, ratio: 0.1, burst: 10 }

/**
 * The configuration is wrong. `path` names the field (`keys[1].secretEnv`); the message never
 * holds a secret.
 *
 * @since 0.1.0
 * @category Errors
 */
export class GatewayConfigError extends Schema.TaggedError<GatewayConfigError>()("GatewayConfigError", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"

/**
 * The stack when the file names none: each account paced to the rate window its 429s taught,
 * sick keys taken out (3 failures in a row, or at once for a 401/402), round robin among the rest.
 *
 * @since 0.4.0
 * @category Constructors
 */
export const DEFAULT_STRATEGY: ReadonlyArray<StrategyEntry> = [
  { name: "account-pacing" },
  { name: "health-aware", failureThreshold: 3 },
  { name: "round-robin" }
]

/**
 * The default stack as the CLI's help names it.
 *
 * @since 0.4.0
 * @category Constructors
 */
export const DEFAULT_STRATEGY_NAMES = DEFAULT_STRATEGY.map((s) => s.name).join(" > ")

const fail = (path: string, message: string) =>
  Effect.fail(new GatewayConfigError({ path, message: `${path}: ${message}` }))

const decodeFile = (input: unknown): Effect.Effect<File, GatewayConfigError> =>
  typeof input !== "object" || input === null || Array.isArray(input)
    ? fail(
        "(root)",
        `must be a JSON object such as {"keys": [...]}, not ${input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`}`
      )
    : Schema.decodeUnknown(File, { errors: "all", onExcessProperty: "error" })(input).pipe(
        Effect.mapError((e) => new GatewayConfigError(ConfigIssues.summary(ConfigIssues.issues(e))))
      )

const readEnv = (name: string, path: string) =>
  Config.redacted(name).pipe(
    Effect.mapError(
      () => new GatewayConfigError({ path, message: `${path}: environment variable ${name} is not set` })
    )
  )

/**
 * Decodes a parsed JSON value and reads the secrets it names from the environment (through the
 * current `ConfigProvider`).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const decode = (input: unknown): Effect.Effect<GatewayConfig, GatewayConfigError> =>
  Effect.gen(function* () {
    const file = yield* decodeFile(input)
    if (file.keys.length === 0) return yield* fail("keys", "the pool has no keys")
    const accounts = file.accounts
    const keys: Array<Key.Key> = []
    for (let i = 0; i < file.keys.length; i++) {
      const entry = file.keys[i]!
      const where = `keys[${i}]`
      if (accounts !== undefined && entry.account !== undefined && !(entry.account in accounts)) {
        return yield* fail(`${where}.account`, `account "${entry.account}" is not declared in accounts`)
      }
      const secret = yield* readEnv(entry.secretEnv, `${where}.secretEnv`)
      const key = yield* Key.decode(
        {
          id: entry.id,
          secret: Redacted.value(secret),
          ...(entry.account === undefined ? {} : { account: entry.account }),
          ...(entry.weight === undefined ? {} : { weight: entry.weight }),
          ...(entry.maxConcurrency === undefined ? {} : { maxConcurrency: entry.maxConcurrency }),
          ...(entry.models === undefined ? {} : { models: entry.models }),
          ...(entry.baseUrl === undefined ? {} : { baseUrl: entry.baseUrl })
        },
        where
      ).pipe(
        Effect.mapError((e) =>
          // The secret came from the environment: name the variable and what is wrong with its
          // value (too short, no `sk-or-` prefix…), never the value.
          e.path.endsWith(".secret")
            ? new GatewayConfigError({
                path: `${where}.secretEnv`,
                message: `${where}.secretEnv: the value of ${entry.secretEnv} ${ConfigIssues.secretProblem(Redacted.value(secret))}`
              })
            : new GatewayConfigError({ path: e.path, message: e.message })
        )
      )
      keys.push(key)
    }
    yield* Key.validateAll(keys).pipe(
      Effect.mapError((e) => new GatewayConfigError({ path: e.path, message: e.message }))
    )
    const managementKeys = yield* readManagementKeys(
      accounts,
      readEnv,
      (path, message) => new GatewayConfigError({ path, message })
    )
    const strategy = file.strategy ?? DEFAULT_STRATEGY
    if (strategy.length === 0) return yield* fail("strategy", "needs at least one strategy")
    for (let i = 0; i < strategy.length; i++) {
      const last = i === strategy.length - 1
      const isDecorator = decorators.has(strategy[i]!.name)
      if (last && isDecorator) {
        return yield* fail(
          `strategy[${i}].name`,
          `"${strategy[i]!.name}" wraps another strategy: end the stack with a base strategy`
        )
      }
      if (!last && !isDecorator) {
        return yield* fail(
          `strategy[${i}].name`,
          `"${strategy[i]!.name}" is a base strategy: only the last entry may be one`
        )
      }
      const entry = strategy[i]!
      if (entry.name === "by-model") {
        const ids = new Set(keys.map((k) => k.id))
        for (let r = 0; r < entry.routes.length; r++) {
          const routeKeys = entry.routes[r]!.keys ?? []
          for (let k = 0; k < routeKeys.length; k++) {
            if (!ids.has(routeKeys[k]!)) {
              return yield* fail(
                `strategy[${i}].routes[${r}].keys[${k}]`,
                `"${routeKeys[k]}" is not the id of a configured key`
              )
            }
          }
        }
      }
    }
    const tokens: Array<Redacted.Redacted<string>> = []
    const names = file.tokens ?? []
    for (let i = 0; i < names.length; i++) tokens.push(yield* readEnv(names[i]!, `tokens[${i}]`))
    const clients: Array<ClientConfig> = []
    for (const [i, c] of (file.clients ?? []).entries()) {
      if (clients.some((o) => o.id === c.id))
        return yield* fail(`clients[${i}].id`, `"${c.id}" is used twice`)
      clients.push({
        id: c.id,
        token: yield* readEnv(c.tokenEnv, `clients[${i}].tokenEnv`),
        budget:
          c.budget === undefined
            ? undefined
            : {
                usd: c.budget.usd,
                period: c.budget.period,
                reserveUsd: c.budget.reserveUsd ?? 0.01,
                usdPerToken: c.budget.usdPerToken,
                priced: c.budget.reserveUsd === undefined && c.budget.usdPerToken === undefined
              },
        rpm: c.rpm,
        models: c.models
      })
    }
    if (tokens.length === 0 && clients.length === 0 && file.anonymous !== true) {
      return yield* fail("tokens", "name at least one token variable, or set anonymous: true")
    }
    // The admin tokens default to the gateway tokens; an explicit empty list would open the dashboard.
    const adminNames = file.admin?.tokens
    if (adminNames?.length === 0) return yield* fail("admin.tokens", "name at least one token variable")
    const adminTokens: Array<Redacted.Redacted<string>> = []
    for (const [i, name] of (adminNames ?? []).entries())
      adminTokens.push(yield* readEnv(name, `admin.tokens[${i}]`))
    if (adminNames === undefined && tokens.length === 0 && clients.length > 0) {
      // A client's token is for chat only: it never opens the dashboard.
      return yield* fail("admin.tokens", "name an admin token: client tokens do not open the dashboard")
    }
    if (file.admin?.protect === true && adminNames === undefined && tokens.length === 0) {
      return yield* fail("admin.protect", "needs an admin token: name one in admin.tokens")
    }
    const redis =
      file.redis === undefined
        ? undefined
        : {
            url: file.redis.url,
            password:
              file.redis.passwordEnv === undefined
                ? undefined
                : yield* readEnv(file.redis.passwordEnv, "redis.passwordEnv"),
            replicaId: file.redis.replicaId,
            replicas: file.redis.replicas ?? 1,
            leaseTtlMs: file.redis.leaseTtlMs ?? 3_000,
            ...(file.redis.commandTimeoutMs === undefined
              ? {}
              : { commandTimeoutMs: file.redis.commandTimeoutMs })
          }
    const retry = file.retry ?? {}
    const deadlines = file.deadlines ?? {}
    return {
      host: file.listen?.host ?? "127.0.0.1",
      port: file.listen?.port ?? 8080,
      baseUrl: (file.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, ""),
      tokens,
      tokenNames: names,
      ...(managementKeys.size === 0 ? {} : { managementKeys }),
      clients,
      keys,
      strategy,
      retry: {
        maxAttempts: retry.maxAttempts ?? 4,
        baseDelayMs: retry.baseDelayMs ?? 25,
        maxDelayMs: retry.maxDelayMs ?? 2000,
        budget: retry.budget ?? { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }
      },
      deadlines: {
        keyWaitMs: deadlines.keyWaitMs ?? 30_000,
        requestMs: deadlines.requestMs ?? 60_000,
        headersMs: deadlines.headersMs ?? 15_000,
        bodyMs: deadlines.bodyMs ?? 30_000,
        bodyIdleMs: deadlines.bodyIdleMs ?? 300_000,
        drainMs: deadlines.drainMs ?? 15_000
      },
      bodyLimitBytes: file.bodyLimitBytes ?? 1024 * 1024,
      hedge:
        file.hedge === false
          ? false
          : {
              afterMs: file.hedge?.afterMs,
              minMs: file.hedge?.minMs ?? defaultHedge.minMs,
              ratio: file.hedge?.ratio ?? defaultHedge.ratio,
              burst: file.hedge?.burst ?? defaultHedge.burst
            },
      redis,
      publicModels: file.publicModels ?? false,
      admin: {
        tokens: adminNames === undefined ? tokens : adminTokens,
        protect: file.admin?.protect ?? false
      },
      // Events only above info unless request lines are asked for: no line per drain in every test.
      log: {
        requests: file.log?.requests ?? false,
        level: file.log?.level ?? (file.log?.requests === true ? "info" : "warn")
      }
    } satisfies GatewayConfig
  })

/**
 * Parses JSON text, then {@link decode}s it. A parse error names the position only: the
 * text could hold something secret.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const parse = (text: string): Effect.Effect<GatewayConfig, GatewayConfigError> =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (e) => {
      const at = e instanceof Error ? /position \d+/.exec(e.message)?.[0] : undefined
      return new GatewayConfigError({
        path: "(root)",
        message: `(root): not valid JSON${at === undefined ? "" : ` (at ${at})`}`
      })
    }
  }).pipe(Effect.flatMap(decode))

/**
 * What is legal but probably not meant, one line each: a `weight` or `maxConcurrency` that no
 * strategy of the stack reads (round robin serves every key in turn whatever its weight), and
 * `threshold` on replicas sharing Redis (its reservations are this process's only).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const warnings = (config: GatewayConfig): ReadonlyArray<string> => {
  const unread = ConfigIssues.unreadFields(
    config.strategy.map((s) => s.name),
    config.keys
  )
  return config.redis !== undefined && config.strategy.some((s) => s.name === "threshold")
    ? [...unread, THRESHOLD_ON_FLEET]
    : unread
}

const THRESHOLD_ON_FLEET =
  "strategy: threshold reserves a key's credit in this process only, so replicas sharing Redis may " +
  'together spend past a key\'s cap; "credit-aware" holds credit across the fleet'
