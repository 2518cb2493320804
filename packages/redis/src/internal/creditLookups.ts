// One `GET /key` at a time per key across the fleet (`FleetCredit`'s `lookup`): the replica
// holding the key's refresh lock looks it up and applies the figure to the ledger in Redis; the
// others wait for it and take the fleet's figure.
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as CreditShare from "@or-balancer/strategies/CreditShare"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as CapacityLeases from "../CapacityLeases.js"
import { RedisStore } from "../RedisStore.js"
import * as Keys from "./keys.js"

/** How long the fleet's last `GET /key` answer is kept in Redis. */
const INFO_TTL_MS = 10 * 60_000

// USD to whole micro-dollars, rounded down, but first to nano-dollars as the ledger keeps money:
// $0.43 is 429999.99999999994 micro-dollars as a double, and a unit short at the tail of a key.
const microsOf = (usd: number): number => Math.floor(Math.round(usd * 1e9) / 1e3)

export interface Options {
  readonly replicaId: string
  readonly lockMs: number
  /** A fleet answer younger than this is taken as this replica's own lookup. */
  readonly shareMs: number
  readonly now: () => number
  /** Notes what a lookup (this replica's or the fleet's) said. */
  readonly recorded: (keyId: string, info: CreditLookup.KeyInfo) => Effect.Effect<void>
}

export const make = (o: Options) =>
  Effect.gen(function* () {
    const redis = yield* RedisStore
    const withRedis = <A, E>(e: Effect.Effect<A, E, RedisStore>) =>
      Effect.provideService(e, RedisStore, redis)
    // Each key's lookup, to look it up again when Redis lost its ledger; one at a time per key.
    const lookups = new Map<string, Effect.Effect<unknown, unknown>>()
    const relooking = new Set<string>()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const relookup = (keyId: string) => {
      const again = lookups.get(keyId)
      if (again === undefined || relooking.has(keyId)) return
      relooking.add(keyId)
      runFork(
        Effect.ensuring(
          Effect.ignore(again),
          Effect.sync(() => relooking.delete(keyId))
        )
      )
    }

    const fleetAnswer = (keyId: string): Effect.Effect<CreditLookup.KeyInfo | undefined> =>
      withRedis(
        Effect.gen(function* () {
          // Wait for the holder's lookup (the lock goes when it is applied or lapses).
          const until = o.now() + o.lockMs
          while (o.now() < until && (yield* redis.command("EXISTS", [Keys.creditLock(keyId)])) === 1) {
            yield* Effect.sleep(20)
          }
          const raw = yield* redis.command("GET", [Keys.creditInfo(keyId)])
          if (typeof raw !== "string") return undefined
          const info = JSON.parse(raw) as CreditLookup.KeyInfo
          if (info.limitRemaining === null) return info
          const s = yield* CapacityLeases.inspectCredit(keyId)
          if (s.base < 0) return undefined
          return { ...info, limitRemaining: Math.max(0, s.base - s.spent) / 1e6 }
        })
      ).pipe(Effect.orElseSucceed(() => undefined))

    // How long ago (server time) the fleet's last answer for the key was stored; Infinity if none.
    const answerAge = (keyId: string): Effect.Effect<number> =>
      withRedis(redis.command("PTTL", [Keys.creditInfo(keyId)])).pipe(
        Effect.map((ttl) => (typeof ttl === "number" && ttl > 0 ? INFO_TTL_MS - ttl : Infinity)),
        Effect.orElseSucceed(() => Infinity)
      )

    const lookup: CreditShare.Service["lookup"] = (key, run) => lookupOnce(key, run, true)
    const lookupOnce = (
      key: Parameters<CreditShare.Service["lookup"]>[0],
      run: Parameters<CreditShare.Service["lookup"]>[1],
      again: boolean
    ): ReturnType<CreditShare.Service["lookup"]> =>
      Effect.gen(function* () {
        if (!lookups.has(key.id))
          lookups.set(
            key.id,
            Effect.suspend(() => lookup(key, run))
          )
        // Another replica looked the key up moments ago (each replica's ledger looks a key up when
        // it first needs it): take the fleet's figure. A second lookup would re-base the ledger
        // while spend is still on its way to Redis, and that spend, in both, would be lost credit.
        if (again && (yield* answerAge(key.id)) < o.shareMs) {
          const shared = yield* fleetAnswer(key.id)
          if (shared !== undefined) {
            yield* o.recorded(key.id, shared)
            return shared
          }
        }
        const locked = yield* withRedis(CapacityLeases.tryRefreshLock(key.id, o.replicaId, o.lockMs)).pipe(
          Effect.either
        )
        // Redis unreachable: this replica looks the key up itself, as it would alone.
        if (locked._tag === "Left") return yield* Effect.tap(run, (info) => o.recorded(key.id, info))
        if (!locked.right) {
          const shared = yield* fleetAnswer(key.id)
          if (shared !== undefined) {
            yield* o.recorded(key.id, shared)
            return shared
          }
          // The holder failed (its lock has lapsed or gone) or Redis lost its answer: take the lock
          // once more, so that the lookup also rebuilds the fleet's ledger; else look it up here.
          if (again) return yield* lookupOnce(key, run, false)
          return yield* Effect.tap(run, (info) => o.recorded(key.id, info))
        }
        const info = yield* run.pipe(
          Effect.tapError(() =>
            withRedis(CapacityLeases.unlockRefresh(key.id, o.replicaId)).pipe(Effect.ignore)
          )
        )
        yield* withRedis(
          Effect.zipRight(
            redis.command("SET", [Keys.creditInfo(key.id), JSON.stringify(info), "PX", INFO_TTL_MS]),
            info.limitRemaining === null
              ? CapacityLeases.unlockRefresh(key.id, o.replicaId)
              : CapacityLeases.refreshCredit(key.id, o.replicaId, microsOf(info.limitRemaining))
          )
        ).pipe(
          // Not applied (a timeout): free the lock, so the next lookup need not wait for it to lapse.
          Effect.catchAll(() => withRedis(CapacityLeases.unlockRefresh(key.id, o.replicaId))),
          Effect.ignore
        )
        yield* o.recorded(key.id, info)
        return info
      })

    return { lookup, relookup }
  })
