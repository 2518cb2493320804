/**
 * Key health shared by every replica: cooldowns (a 429's `Retry-After`, a 402) and ejections
 * (401, repeated failures), written through by the replica that saw the answer and read by all.
 *
 * A write only ever extends: a replica that saw a shorter `Retry-After` cannot end another's
 * longer cooldown (LiteLLM's multi-instance bug #40130). Ends are computed from Redis's clock;
 * reads return the time left, which a replica counts on its own clock.
 *
 * Half-open: when an ejection ends, one replica in the fleet takes the key's probe
 * (`tryProbe`, `SET NX PX`); only that replica's successful probe lifts an ejection early.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Keys from "./internal/keys.js"
import * as Lua from "./internal/lua.js"
import type { RedisUnavailable } from "./RedisUnavailable.js"
import { RedisStore } from "./RedisStore.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Extension {
  /** How long the state lasts from now, after this write. */
  readonly remainingMs: number
  /** Whether this write moved the end (false: a longer one was already there). */
  readonly extended: boolean
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Health {
  readonly keyId: string
  /** 0 when not cooling down. */
  readonly cooldownMs: number
  readonly cooldownReason: string | undefined
  /** 0 when not ejected. */
  readonly ejectedMs: number
  readonly ejectedReason: string | undefined
}

/**
 * Cools a key down for `forMs` from now (Redis's now), unless it already cools down for longer.
 *
 * @since 0.1.0
 * @category Health
 */
export const extendCooldown = (
  keyId: string,
  forMs: number,
  reason: string
): Effect.Effect<Extension, RedisUnavailable, RedisStore> => extend(keyId, "cooldown", forMs, reason)

/**
 * Ejects a key for `forMs` from now, unless it is already ejected for longer.
 *
 * @since 0.1.0
 * @category Health
 */
export const eject = (
  keyId: string,
  forMs: number,
  reason: string
): Effect.Effect<Extension, RedisUnavailable, RedisStore> => extend(keyId, "ejected", forMs, reason)

/**
 * The current cooldowns and ejections of some keys (one atomic read per key: keys may sit on
 * different Cluster slots).
 *
 * @since 0.1.0
 * @category Health
 */
export const readHealth = (
  keyIds: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<Health>, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    Effect.forEach(
      keyIds,
      (keyId) =>
        Effect.map(redis.run(Lua.healthRead, [Keys.health(keyId)], []), (reply): Health => {
          const a = reply as ReadonlyArray<string | number>
          return {
            keyId,
            cooldownMs: Number(a[0]),
            cooldownReason: a[1] === "" ? undefined : String(a[1]),
            ejectedMs: Number(a[2]),
            ejectedReason: a[3] === "" ? undefined : String(a[3])
          }
        }),
      // ioredis pipelines concurrent commands on one connection: one round trip for all keys.
      { concurrency: "unbounded" }
    )
  )

/**
 * Takes the key's one fleet-wide probe for `ttlMs`; `true` when this replica got it.
 *
 * @since 0.1.0
 * @category Health
 */
export const tryProbe = (
  keyId: string,
  replicaId: string,
  ttlMs: number
): Effect.Effect<boolean, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.command("SET", [Keys.probe(keyId), replicaId, "PX", Math.max(1, Math.floor(ttlMs)), "NX"])
  ).pipe(Effect.map((reply) => reply === "OK"))

/**
 * Ends this replica's probe; `readmit` (the probe succeeded) also lifts the key's ejection.
 * Returns `false` when the replica did not hold the probe (it lapsed), and then changes nothing.
 *
 * @since 0.1.0
 * @category Health
 */
export const endProbe = (
  keyId: string,
  replicaId: string,
  readmit: boolean
): Effect.Effect<boolean, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(Lua.probeEnd, [Keys.health(keyId), Keys.probe(keyId)], [replicaId, readmit ? 1 : 0])
  ).pipe(Effect.map((reply) => reply === 1))

const extend = (
  keyId: string,
  field: "cooldown" | "ejected",
  forMs: number,
  reason: string
): Effect.Effect<Extension, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(Lua.healthExtend, [Keys.health(keyId)], [field, Math.max(0, Math.ceil(forMs)), reason])
  ).pipe(
    Effect.map((reply) => {
      const a = reply as ReadonlyArray<number>
      return { remainingMs: Number(a[0]), extended: a[1] === 1 }
    })
  )

/**
 * An account out for `forMs` from now (its credits ran out: every key of it is refused), unless it
 * already is for longer. Returns how long it is out after the write.
 *
 * @since 0.4.0
 * @category Accounts
 */
export const accountOut = (
  account: string,
  forMs: number,
  reason: string
): Effect.Effect<number, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(Lua.accountOutExtend, [Keys.accountsOut], [account, Math.max(0, Math.ceil(forMs)), reason])
  ).pipe(Effect.map(Number))

/**
 * @since 0.4.0
 * @category Models
 */
export interface AccountOut {
  readonly account: string
  readonly remainingMs: number
  readonly reason: string
}

/**
 * Every account the fleet has out now (one atomic read).
 *
 * @since 0.4.0
 * @category Accounts
 */
export const readAccountsOut: Effect.Effect<
  ReadonlyArray<AccountOut>,
  RedisUnavailable,
  RedisStore
> = Effect.flatMap(RedisStore, (redis) => redis.run(Lua.accountsOutRead, [Keys.accountsOut], [])).pipe(
  Effect.map((reply) => {
    const a = reply as ReadonlyArray<string | number>
    const out: Array<AccountOut> = []
    for (let i = 0; i + 2 < a.length; i += 3)
      out.push({ account: String(a[i]), remainingMs: Number(a[i + 1]), reason: String(a[i + 2]) })
    return out
  })
)
