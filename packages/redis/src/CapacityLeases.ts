/**
 * Leases of a key's capacity, after Google's Doorman: each replica holds a *slice* of a key's
 * concurrency permits and of its credit, granted by one atomic Lua script, decides locally within
 * it, and renews it in the background. Across live replicas the slices never sum past the cap
 * (permits) or the available credit (micro-dollars). A slice expires `ttlMs` after its last renewal
 * by Redis's clock, and its amount returns to the pool, so a replica that dies (SIGKILL) gives its
 * capacity back within one TTL.
 *
 * Demand moves capacity: each call records what the replica wants; the pool is water-filled over
 * the live replicas' demands, so a replica always gets at least min(want, cap ÷ live replicas) and
 * what others do not want. A replica holding more than its share is shrunk to it when it next
 * renews (never below what it has in use), and the capacity goes to whoever asks next.
 *
 * A key's table expires a minute after its last slice does, so an idle key leaves nothing behind;
 * its credit ledger is then seeded again from the next replica's lookup (`available`), as after a
 * Redis restart.
 *
 * Durations, not instants, come back (`ttlMs`): the replica counts them on its own clock from when
 * it sent the call, so its clock may disagree with Redis's without harm.
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
export interface Grant {
  /** The replica's slice now. */
  readonly granted: number
  /** It lasts this long from the call (0 when nothing is held). */
  readonly ttlMs: number
  /** Replicas holding a live slice of this key, this one included. */
  readonly liveReplicas: number
}

/**
 * @since 0.3.0
 * @category Models
 */
export interface PermitGrant extends Grant {
  /** Permits granted to every live slice now, this one included: at the cap, others may be short. */
  readonly totalGranted: number
  /** The key's table's generation (server ms it was made): a new one means Redis lost the last. */
  readonly born: number
  /**
   * Permits the replica may have in use once its running requests end (at most `granted`). Below
   * `granted` when the slice is kept up only by permits in use while others are short of their
   * share: the replica then hands no freed permit to its own queue until it is within this.
   */
  readonly usable: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface CreditGrant extends Grant {
  /** Credit neither granted to a slice nor spent (micro-dollars). */
  readonly unallocated: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Slices {
  readonly totalGranted: number
  /** Credit only: the ledger's base and the spend settled since (base -1: no ledger). */
  readonly base: number
  readonly spent: number
  readonly slices: ReadonlyArray<{
    readonly replicaId: string
    readonly granted: number
    readonly wanted: number
    readonly ttlMs: number
  }>
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface PermitRequest {
  readonly keyId: string
  readonly replicaId: string
  /** Permits the replica would like to hold (0 with `inUse` 0 releases the slice). */
  readonly want: number
  /** The key's concurrency cap. */
  readonly cap: number
  readonly ttlMs: number
  /** Permits the replica has in use: a renewal never shrinks the slice below this. */
  readonly inUse?: number | undefined
  /**
   * Permits the replica may still use of its last grant (it has not expired on the replica's
   * clock). Redis re-registers them when it has no slice on record for the replica (it was emptied).
   */
  readonly claim?: number | undefined
  /**
   * The table generation (`born`) this replica last saw, 0 if none or too long ago for the table to
   * still exist. Non-zero and no table: Redis was emptied while slices were out, and the new table
   * grows no slice for one TTL beyond what re-registered claims free.
   */
  readonly lastBorn?: number | undefined
}

/**
 * Acquires, renews, grows or shrinks a replica's slice of a key's permits.
 *
 * @since 0.1.0
 * @category Permits
 */
export const acquirePermits = (r: PermitRequest): Effect.Effect<PermitGrant, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(
      Lua.permitsAcquire,
      [Keys.permits(r.keyId)],
      [
        r.replicaId,
        int(r.want),
        int(r.cap),
        int(r.ttlMs),
        int(r.inUse ?? 0),
        int(r.claim ?? 0),
        int(r.lastBorn ?? 0)
      ]
    )
  ).pipe(
    Effect.map((reply) => {
      const a = reply as ReadonlyArray<number>
      return {
        ...toGrant(reply),
        totalGranted: Number(a[3]),
        born: Number(a[4] ?? 0),
        usable: Math.min(Number(a[0]), Number(a[5] ?? a[0]))
      }
    })
  )

/**
 * Gives a replica's whole permit slice back at once (on shutdown); returns how many it held.
 *
 * @since 0.1.0
 * @category Permits
 */
export const releasePermits = (
  keyId: string,
  replicaId: string
): Effect.Effect<number, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(Lua.permitsRelease, [Keys.permits(keyId)], [replicaId])
  ).pipe(Effect.map(Number))

/**
 * The live permit slices of a key, read atomically (for status pages and tests).
 *
 * @since 0.1.0
 * @category Permits
 */
export const inspectPermits = (keyId: string): Effect.Effect<Slices, RedisUnavailable, RedisStore> =>
  inspect(Keys.permits(keyId))

/**
 * @since 0.1.0
 * @category Models
 */
export interface CreditRequest {
  readonly keyId: string
  readonly replicaId: string
  /** Micro-dollars the replica would like to hold for its requests. */
  readonly want: number
  /**
   * The key's remaining credit as this replica knows it (micro-dollars, from `GET /key`). Used only
   * to start the ledger when Redis has none (first use, or Redis restarted empty); afterwards the
   * ledger is moved only by settled spend and by `refreshCredit`. Negative: never seed (with no
   * ledger, nothing is granted and `unallocated` is -1; look the key up and `refreshCredit`).
   */
  readonly available: number
  readonly ttlMs: number
  /** Micro-dollars reserved by requests in flight: a renewal never shrinks the slice below this. */
  readonly inUse?: number | undefined
  /** Slices are granted in whole units of this (micro-dollars; default 1): the largest reservation. */
  readonly unit?: number | undefined
}

/**
 * Reserves, renews or shrinks a replica's slice of a key's credit. Slices plus settled spend never
 * exceed the ledger's base.
 *
 * @since 0.1.0
 * @category Credit
 */
export const reserveCredit = (r: CreditRequest): Effect.Effect<CreditGrant, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(
      Lua.creditReserve,
      [Keys.credit(r.keyId)],
      [
        r.replicaId,
        int(r.want),
        r.available < 0 ? -1 : int(r.available),
        int(r.ttlMs),
        int(r.inUse ?? 0),
        Math.max(1, int(r.unit ?? 1))
      ]
    )
  ).pipe(
    Effect.map((reply) => {
      const a = reply as ReadonlyArray<number>
      return { ...toGrant(reply), unallocated: Number(a[3]) }
    })
  )

/**
 * Records an answer's actual cost: it leaves the replica's slice and the ledger for good. Returns
 * the slice left. Without a ledger (Redis restarted empty) nothing is recorded: the spend is in the
 * upstream's figure that seeds the next one.
 *
 * With `resend` (the replica's spend on the key Redis acknowledged so far, and an id of the replica's
 * process), sending it again is safe: a settle whose reply was lost (a timeout after Redis applied
 * it) and that is sent again with more spend added records only what it had not, instead of
 * counting the spend twice.
 *
 * @since 0.1.0
 * @category Credit
 */
export const settleCredit = (
  keyId: string,
  replicaId: string,
  spent: number,
  resend?: { readonly settledBefore: number; readonly epoch: string } | undefined
): Effect.Effect<number, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(
      Lua.creditSettle,
      [Keys.credit(keyId)],
      resend === undefined
        ? [replicaId, int(spent)]
        : [replicaId, int(spent), int(resend.settledBefore), resend.epoch]
    )
  ).pipe(Effect.map(Number))

/**
 * Returns the unspent part of a replica's credit slice to the pool; returns how much.
 *
 * @since 0.1.0
 * @category Credit
 */
export const releaseCredit = (
  keyId: string,
  replicaId: string
): Effect.Effect<number, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) => redis.run(Lua.creditRelease, [Keys.credit(keyId)], [replicaId])).pipe(
    Effect.map(Number)
  )

/**
 * Takes the key's refresh lock (`SET NX PX`) so one replica at a time looks its credit up; `true`
 * when this replica got it. The lock lapses by itself after `ttlMs`. The spend settled until now
 * is noted: `refreshCredit` keeps what is settled after it, which the lookup may not include.
 *
 * @since 0.1.0
 * @category Credit
 */
export const tryRefreshLock = (
  keyId: string,
  replicaId: string,
  ttlMs: number
): Effect.Effect<boolean, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(Lua.creditLock, [Keys.creditLock(keyId), Keys.credit(keyId)], [replicaId, int(ttlMs)])
  ).pipe(Effect.map((reply) => reply === 1))

/**
 * Sets the ledger from a fresh lookup and frees the lock; applied only while this replica holds
 * the lock (`false` otherwise, and nothing changes).
 *
 * @since 0.1.0
 * @category Credit
 */
export const refreshCredit = (
  keyId: string,
  replicaId: string,
  available: number
): Effect.Effect<boolean, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(Lua.creditRefresh, [Keys.credit(keyId), Keys.creditLock(keyId)], [replicaId, int(available)])
  ).pipe(Effect.map((reply) => reply === 1))

/**
 * Frees the refresh lock without a new figure (the lookup failed); only the holder can.
 *
 * @since 0.1.0
 * @category Credit
 */
export const unlockRefresh = (
  keyId: string,
  replicaId: string
): Effect.Effect<boolean, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) => redis.run(Lua.unlock, [Keys.creditLock(keyId)], [replicaId])).pipe(
    Effect.map((reply) => reply === 1)
  )

/**
 * The live credit slices and the ledger of a key, read atomically.
 *
 * @since 0.1.0
 * @category Credit
 */
export const inspectCredit = (keyId: string): Effect.Effect<Slices, RedisUnavailable, RedisStore> =>
  inspect(Keys.credit(keyId))

const inspect = (key: string): Effect.Effect<Slices, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) => redis.run(Lua.slicesInspect, [key], [])).pipe(
    Effect.map((reply) => {
      const a = reply as ReadonlyArray<string | number>
      const slices: Array<Slices["slices"][number]> = []
      for (let i = 3; i + 3 < a.length; i += 4) {
        slices.push({
          replicaId: String(a[i]),
          granted: Number(a[i + 1]),
          wanted: Number(a[i + 2]),
          ttlMs: Number(a[i + 3])
        })
      }
      return { totalGranted: Number(a[0]), base: Number(a[1]), spent: Number(a[2]), slices }
    })
  )

const toGrant = (reply: unknown): Grant => {
  const a = reply as ReadonlyArray<number>
  return { granted: Number(a[0]), ttlMs: Number(a[1]), liveReplicas: Number(a[2]) }
}

// Scripts work in integers; a fractional argument is a caller's bug, floored rather than sent.
const int = (n: number): number => Math.max(0, Math.floor(n))
