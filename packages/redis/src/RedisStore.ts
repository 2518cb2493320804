/**
 * A Redis connection for the balancer's shared state, made to never hold a request up.
 *
 * The client is ioredis 5 (5.11.1, pinned in the catalog). Both maintained clients would do
 * (npm's latest: ioredis 6.1, node-redis 6.4); ioredis 5 because:
 * - **One copy**: `@effect/experimental`'s Redis persistence peers on `ioredis@^5`, so an
 *   application using both holds one client library (6.x would be a second one).
 * - **Scripts**: `defineCommand` sends a script's body once per connection, then only EVALSHA,
 *   and resends the body when the server answers NOSCRIPT (after a restart or `SCRIPT FLUSH`);
 *   under `Redis.Cluster`, per node. (node-redis' `defineScript` also falls back on NOSCRIPT.)
 * - **Command timeouts**: `commandTimeout` rejects any command, sent or not, unanswered after N ms,
 *   on the client's own timer. node-redis' client-wide `commandOptions.timeout` covers only the
 *   wait to be sent unless `rejectInFlight` is set too: the same result, one more thing to get right.
 * - **No offline queue**: `enableOfflineQueue: false` fails a command at once while disconnected
 *   (node-redis: `disableOfflineQueue`), so Redis being down costs a request nothing.
 * - **Cluster**: `Redis.Cluster` takes the same scripts and routes by hash tag; every key of ours
 *   carries one, so the scripts run unchanged on a Cluster. (This layer opens a single node.)
 * ioredis is maintained "on a best-effort basis" and its README recommends node-redis for new
 * projects; we use no Redis 8 feature, and if ioredis stops being maintained,
 * node-redis 6 with `commandOptions: { timeout, rejectInFlight: true }` is the
 * swap, behind this module only.
 *
 * On top: a circuit breaker (after `failures` consecutive failures, calls fail fast for
 * `openForMs`, then one trial is let through), and every failure is a {@link RedisUnavailable}.
 * The password is `Redacted`, read from an environment variable named in the config, given to
 * the client as an option (never in the URL, so no client message can echo it), and never logged.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import { Breaker, type BreakerState } from "./internal/breaker.js"
import * as Lua from "./internal/lua.js"
import { RedisUnavailable } from "./RedisUnavailable.js"

/**
 * A Lua script run by EVALSHA. Every key it touches is passed as a key argument.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Script {
  readonly name: string
  readonly numberOfKeys: number
  readonly lua: string
}

/**
 * @since 0.1.0
 * @category Models
 */
export type { BreakerState }

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** `redis://host:port/db`, without a password (give that by `passwordEnv`). */
  readonly url: string
  /** The name of the environment variable holding the password, like the keys' secrets. */
  readonly passwordEnv?: string | undefined
  /** A password already read (takes precedence over `passwordEnv`). */
  readonly password?: Redacted.Redacted | undefined
  /** Unanswered commands fail after this long (default 100 ms). */
  readonly commandTimeoutMs?: number | undefined
  /** How long start-up waits for the first connection before going on without it (default 1 s). */
  readonly connectTimeoutMs?: number | undefined
  /** Consecutive failures that open the breaker (default 3) and how long it stays open (default 1 s). */
  readonly breaker?:
    { readonly failures?: number | undefined; readonly openForMs?: number | undefined } | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Runs one of this package's scripts. */
  readonly run: (
    script: Script,
    keys: ReadonlyArray<string>,
    args: ReadonlyArray<string | number>
  ) => Effect.Effect<unknown, RedisUnavailable>
  /** Sends a plain command, through the same breaker. */
  readonly command: (
    name: string,
    args: ReadonlyArray<string | number>
  ) => Effect.Effect<unknown, RedisUnavailable>
  readonly breaker: Effect.Effect<BreakerState>
  readonly unsafeBreaker: () => BreakerState
  /**
   * `run` outside any fiber, for a hot path that calls Redis once per request (a client's budget):
   * `done` gets the outcome. `run` is derived from it.
   */
  readonly unsafeRun: (
    script: Script,
    keys: ReadonlyArray<string>,
    args: ReadonlyArray<string | number>,
    done: (result: UnsafeResult) => void
  ) => void
}

/**
 * An unsafe call's outcome: Redis's reply, Redis unavailable, or a bug of ours (a script or
 * argument error: `run` dies with it).
 *
 * @since 0.3.0
 * @category Models
 */
export type UnsafeResult =
  | { readonly _tag: "Reply"; readonly value: unknown }
  | { readonly _tag: "Unavailable"; readonly error: RedisUnavailable }
  | { readonly _tag: "Bug"; readonly cause: unknown }

/**
 * @since 0.1.0
 * @category Context
 */
export class RedisStore extends Context.Tag("@or-balancer/redis/RedisStore")<RedisStore, Service>() {}

type ScriptClient = Record<string, (...args: ReadonlyArray<string | number>) => Promise<unknown>>

/**
 * Opens the connection (closed with the scope). Redis being down at start-up is not an error:
 * calls fail with `RedisUnavailable` until it is up, and the client keeps reconnecting.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (options: Options): Effect.Effect<Service, ConfigError.ConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const url = yield* parseUrl(options.url)
    const password =
      options.password ??
      (options.passwordEnv === undefined ? undefined : yield* Config.redacted(options.passwordEnv))
    const clock = yield* Effect.clock
    const breaker = new Breaker({
      failures: options.breaker?.failures ?? 3,
      openForMs: options.breaker?.openForMs ?? 1_000
    })
    const client = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new Redis(url, {
            ...(password === undefined ? {} : { password: Redacted.value(password) }),
            lazyConnect: true,
            enableOfflineQueue: false,
            commandTimeout: options.commandTimeoutMs ?? 100,
            connectTimeout: options.connectTimeoutMs ?? 1_000,
            // Commands caught by a dropped connection fail at once rather than wait for a reconnect.
            maxRetriesPerRequest: 0,
            // Reconnect soon: after a Redis restart the fleet should resync within a second.
            retryStrategy: (times) => Math.min(50 * times, 500)
          })
      ),
      (client) => Effect.sync(() => client.disconnect())
    )
    // Failures reach callers as `RedisUnavailable`; the event would only be printed by ioredis.
    client.on("error", () => {})
    for (const s of Lua.all) client.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua })
    yield* Effect.promise(() =>
      client.connect().then(
        () => undefined,
        () => undefined
      )
    ).pipe(Effect.timeout(options.connectTimeoutMs ?? 1_000), Effect.ignore)

    const unsafeCall = (send: () => Promise<unknown>, done: (result: UnsafeResult) => void): void => {
      if (!breaker.admit(clock.unsafeCurrentTimeMillis())) return done(CIRCUIT_OPEN_RESULT)
      send().then(
        (value) => {
          breaker.success()
          done({ _tag: "Reply", value })
        },
        (cause: unknown) => {
          const error = classify(cause)
          if (error === undefined) {
            // A script or argument error is our bug; it says nothing about Redis' health.
            breaker.success()
            done({ _tag: "Bug", cause })
          } else {
            breaker.failure(clock.unsafeCurrentTimeMillis())
            done({ _tag: "Unavailable", error })
          }
        }
      )
    }
    const call = (send: () => Promise<unknown>): Effect.Effect<unknown, RedisUnavailable> =>
      Effect.async<unknown, RedisUnavailable>((resume) =>
        unsafeCall(send, (r) =>
          resume(
            r._tag === "Reply"
              ? Effect.succeed(r.value)
              : r._tag === "Bug"
                ? Effect.die(r.cause)
                : Effect.fail(r.error)
          )
        )
      )
    const scripts = client as unknown as ScriptClient
    // Scripts of other modules (client budgets) are defined on first use, then sent by EVALSHA.
    const define = (script: Script) => {
      if (scripts[script.name] === undefined)
        client.defineCommand(script.name, { numberOfKeys: script.numberOfKeys, lua: script.lua })
    }
    return RedisStore.of({
      run: (script, keys, args) => {
        define(script)
        return call(() => scripts[script.name]!(...keys, ...args))
      },
      unsafeRun: (script, keys, args, done) => {
        define(script)
        unsafeCall(() => scripts[script.name]!(...keys, ...args), done)
      },
      command: (name, args) => call(() => client.call(name, ...args)),
      breaker: Effect.sync(() => breaker.state(clock.unsafeCurrentTimeMillis())),
      unsafeBreaker: () => breaker.state(clock.unsafeCurrentTimeMillis())
    })
  })

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options): Layer.Layer<RedisStore, ConfigError.ConfigError> =>
  Layer.scoped(RedisStore, make(options))

/**
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<Options>
): Layer.Layer<RedisStore, ConfigError.ConfigError> =>
  Layer.scoped(RedisStore, Effect.flatMap(Config.unwrap(options), make))

const CIRCUIT_OPEN_RESULT: UnsafeResult = {
  _tag: "Unavailable",
  error: new RedisUnavailable({ reason: "CircuitOpen" })
}

const parseUrl = (raw: string): Effect.Effect<string, ConfigError.ConfigError> =>
  Effect.suspend(() => {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      return Effect.fail(ConfigError.InvalidData(["url"], "not a URL (expected redis://host:port/db)"))
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:")
      return Effect.fail(ConfigError.InvalidData(["url"], "expected a redis:// or rediss:// URL"))
    if (url.password !== "")
      return Effect.fail(
        ConfigError.InvalidData(["url"], "holds a password: give it by environment variable (passwordEnv)")
      )
    return Effect.succeed(raw)
  })

// Redis' answers that are bugs of ours (a script error, a wrong type), not unavailability.
const BUG = /^(ERR user_script|ERR Error running script|ERR wrong number|WRONGTYPE|ERR value is not)/

const classify = (cause: unknown): RedisUnavailable | undefined => {
  const error = cause instanceof Error ? cause : new Error(String(cause))
  const detail = error.message
  if (error.name === "ReplyError") {
    return BUG.test(detail) ? undefined : new RedisUnavailable({ reason: "Rejected", detail })
  }
  if (/timed out/i.test(detail)) return new RedisUnavailable({ reason: "Timeout", detail })
  return new RedisUnavailable({ reason: "Disconnected", detail })
}
