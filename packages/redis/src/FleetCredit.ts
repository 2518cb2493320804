/**
 * The `CreditShare` of one replica of a fleet: each key's credit is leased from Redis in slices
 * (`CapacityLeases.reserveCredit`), so that the reservations of every replica summed never exceed
 * what the key has left, and the `CreditLedger` reserves only within this replica's slice.
 *
 * - **Hot path**: `covers`/`take`/`settle` read and change local counters only. A slice is spent
 *   by what this replica has reserved plus what it spent since its last renewal was sent.
 * - **Background**: the spend is settled in Redis, then the slice renewed with the replica's
 *   demand. With credit to spare in the fleet, a slice is the reservations in flight + twice what
 *   was asked since the last renewal (at least 2 units), renewed ahead when half of it is used,
 *   kept whole while that renewal is in flight, and otherwise renewed at the keep-alive (a third
 *   of the TTL): steady load never waits on Redis. While the fleet's credit is nearly all granted
 *   (less than 2 units per live replica unallocated) or Redis is unreachable, every key renews on
 *   each `renewEveryMs` tick (default 50 ms) with at most 4 × its recent demand, keeping only a
 *   unit plus its demand while in flight, so credit moves to whoever needs it. A selection no slice
 *   covers renews at once (`grow`) and waits for the grant: up to the request's deadline while the
 *   fleet can still grant (ledger being rebuilt, credit unallocated), else 1 s (credit moving from
 *   other replicas' slices); a replica with no reservation for 250 ms gives its slice back.
 *   Slices are whole units of the largest reservation seen, so a cap is not left in pieces no
 *   replica can spend. A settle resent after a lost reply is counted once.
 * - **One lookup at a time**: `GET /key` runs on the replica holding the key's refresh lock
 *   (`SET NX PX`); the others wait for it, or take an answer under 10 s old, as the fleet's figure
 *   (the ledger's base − spend) and the answer's other fields from Redis.
 * - **Redis unreachable** (or back empty, until a lookup rebuilds its ledger): a slice is kept
 *   until it expires, then the replica spends its share (÷ the fleet's size) of the credit no
 *   replica held at its last grant, never the whole; lookups run locally.
 *
 * Redis keeps micro-dollars, the ledger nano-dollars: spend is rounded up and grants down, so the
 * rounding never lets the fleet overspend.
 *
 * @since 0.3.0
 */
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as CreditShare from "@or-balancer/strategies/CreditShare"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as CapacityLeases from "./CapacityLeases.js"
import { freshHeld, type Held } from "./internal/creditHeld.js"
import * as CreditLookups from "./internal/creditLookups.js"
import { RedisStore } from "./RedisStore.js"

/**
 * @since 0.3.0
 * @category Models
 */
export interface Options {
  readonly replicaId: string
  /** The fleet's size as configured; the live replicas Redis reports raise it. */
  readonly replicas: number
  /** Slice lifetime (default 3 s): a killed replica's credit returns within it. */
  readonly ttlMs?: number | undefined
  /** How often slices are renewed and rebalanced by demand (default 50 ms). */
  readonly renewEveryMs?: number | undefined
  /** How long one replica may hold a key's lookup before another may try (default 5 s). */
  readonly lookupLockMs?: number | undefined
}

/**
 * One key's slice as this replica holds it (nano-dollars).
 *
 * @since 0.3.0
 * @category Models
 */
export interface Slice {
  readonly keyId: string
  /** Granted at the last renewal (or the local share), less nothing spent since. */
  readonly granted: number
  readonly reserved: number
  /** Spent since the last renewal was sent. */
  readonly spent: number
  readonly source: "redis" | "held" | "local" | "none"
}

/**
 * @since 0.3.0
 * @category Models
 */
export interface Service extends CreditShare.Service {
  /** Every key's slice, for status and tests. */
  readonly slices: () => ReadonlyArray<Slice>
  readonly unsafeDegraded: () => boolean
}

const MICRO = 1_000
/** A replica with nothing reserved or asked for this long gives its credit slices back. */
const IDLE_MS = 250
/** How long a reservation no slice covers waits for more credit before it is refused. */
const GROW_WAIT_MS = 1_000
/** A fleet's `GET /key` answer this recent serves another replica's lookup (each ledger asks once). */
const LOOKUP_SHARE_MS = 10_000
/** Headroom beyond twice the recent demand, in units (the largest reservation). */
const MIN_UNITS = 2

/**
 * The share and its renewal loop, until the scope closes; then the slices are given back.
 *
 * @since 0.3.0
 * @category Constructors
 */
export const make = (options: Options): Effect.Effect<Service, never, RedisStore | Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* RedisStore
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const ttlMs = options.ttlMs ?? 3_000
    const every = options.renewEveryMs ?? 50
    const keepAliveMs = Math.max(every, Math.floor(ttlMs / 3))
    const lockMs = options.lookupLockMs ?? 5_000
    // This process's settles on Redis (a restarted replica starts its acknowledged spend anew).
    const epoch = `${(yield* Random.nextInt).toString(36)}${(yield* Random.nextInt).toString(36)}`
    const withRedis = <A, E>(e: Effect.Effect<A, E, RedisStore>) =>
      Effect.provideService(e, RedisStore, redis)
    const keys = new Map<string, Held>()
    let degraded = false
    let liveReplicas = 1
    const fleetSize = () => Math.max(1, options.replicas, liveReplicas)

    // Cut off from the ledger (Redis down, or back empty), a replica spends its slice until it
    // expires, then its share (÷ the fleet's size) of what no replica held at its last grant: as
    // the local share, blind to the rest of the fleet (a replica alone cut off can
    // overspend by that share), never the whole.
    const allowance = (h: Held): number => {
      const a = now() < h.expiresAt ? h.granted : degraded || h.orphan ? Math.floor(h.spare / fleetSize()) : 0
      return h.frozen === undefined ? a : Math.min(a, h.frozen)
    }

    const covers = (keyId: string, amount: number): boolean => {
      const h = keys.get(keyId)
      if (h === undefined) return false
      if (h.available === null) return true
      if (amount > h.unit) h.unit = amount
      return h.reserved + h.unsent + amount <= allowance(h)
    }

    // The round that starts next: `grow` waits for it, so its demand is in the renewal.
    let next = Deferred.unsafeMake<void>(undefined as never)
    let kick = Deferred.unsafeMake<void>(undefined as never)
    let kicked = false

    const renew = (keyId: string, h: Held): Effect.Effect<void> => {
      if (h.available === null) return Effect.void
      const at = now()
      if (h.reserved > 0) h.busyAt = at
      // A busy replica asks for its demand; while the renewal is in flight it keeps its
      // reservations and at most a unit plus its demand (whole units: a kept fragment no replica
      // could spend is credit lost), so demand still moves the rest to whoever needs it.
      const busy = at - h.busyAt < IDLE_MS
      const sending = h.unsent
      // Redis takes the spend (rounded up to micro-dollars) off the slice before it renews it.
      const settled = Math.ceil(sending / MICRO)
      h.granted = Math.max(0, h.granted - settled * MICRO)
      let want: number
      let inUse: number
      if (h.tight) {
        const headroom = busy ? Math.max(h.unit, 4 * h.demand) : 0
        const extra = Math.min(headroom, h.unit + h.demand)
        inUse = Math.ceil((h.reserved + Math.floor(extra / h.unit) * h.unit) / MICRO)
        want = Math.ceil((h.reserved + headroom) / MICRO)
      } else {
        // Credit to spare in the fleet: twice the recent demand plus a minimum, and the slice kept
        // (up to that) while the renewal is in flight, so steady load never waits on Redis.
        const headroom = busy ? Math.max(MIN_UNITS * h.unit, 2 * h.demand) : 0
        want = Math.ceil((h.reserved + headroom) / MICRO)
        inUse = Math.max(Math.ceil(h.reserved / MICRO), Math.min(Math.floor(h.granted / MICRO), want))
      }
      h.asked = false
      h.unsent = 0
      h.demand = 0
      h.frozen = inUse * MICRO
      // Sent with what Redis acknowledged before, and acknowledged only with the whole renewal: a
      // renewal that fails after its settle applied (a timeout, a lost reply) sends the spend again,
      // and Redis, seeing the same acknowledged figure, does not count it twice (credit lost for good).
      const settle =
        settled > 0
          ? CapacityLeases.settleCredit(keyId, options.replicaId, settled, { settledBefore: h.acked, epoch })
          : Effect.void
      return withRedis(
        Effect.zipRight(
          settle,
          CapacityLeases.reserveCredit({
            keyId,
            replicaId: options.replicaId,
            want,
            // Never seeded from this replica's figure, which misses the others' spend: the ledger
            // comes from a lookup (`refreshCredit`), also after Redis restarted empty.
            available: -1,
            ttlMs,
            inUse,
            unit: Math.max(1, Math.floor(h.unit / MICRO))
          })
        )
      ).pipe(
        Effect.match({
          onSuccess: (grant) => {
            degraded = false
            h.acked += settled
            if (grant.unallocated < 0) {
              // No ledger: keep what is held until it expires, and look the key up again.
              h.orphan = true
              h.source = "held"
              relookup(keyId)
              return
            }
            h.orphan = false
            h.spare = grant.unallocated * MICRO
            // Others may soon be short when what is left cannot give each replica another slice
            // like this one: then renew on every tick, so slack moves to whoever asks.
            h.tight =
              grant.granted < want ||
              h.spare < Math.max(1, grant.liveReplicas) * Math.max(MIN_UNITS * h.unit, want * MICRO)
            liveReplicas = Math.max(liveReplicas, grant.liveReplicas)
            h.granted = grant.granted * MICRO
            // Counted from when the call left: the server's TTL started later, so this is safe.
            h.expiresAt = at + grant.ttlMs
            h.source = "redis"
          },
          onFailure: () => {
            degraded = true
            h.tight = true
            // Not settled: sent again with the next renewal.
            h.unsent += sending
            // A call that timed out may still have been applied, the slice shrunk to the `inUse`
            // sent and the rest handed to another replica: no more than that is kept.
            h.granted = Math.min(h.granted, inUse * MICRO) + settled * MICRO
            h.source = now() < h.expiresAt ? "held" : "local"
          }
        }),
        Effect.ensuring(Effect.sync(() => (h.frozen = undefined)))
      )
    }

    // A tight key renews on every tick (its slack must move to the others); otherwise a key
    // renews when half its slice is used, when a selection waits, to give back once idle, and
    // at the keep-alive (a third of the TTL).
    const due = (h: Held, at: number): boolean => {
      if (h.available === null) return false
      const used = h.reserved + h.unsent
      if (h.reserved > 0) h.busyAt = at
      // Nothing held, used or asked for: nothing to renew (a new selection asks through `grow`).
      if (!h.tight && !h.asked && used === 0 && h.granted === 0 && h.demand === 0) return false
      if (h.tight || h.asked || 2 * used >= h.granted) return true
      if (at - h.renewedAt >= keepAliveMs) {
        h.renewedAt = at
        return true
      }
      return h.granted > 0 && h.reserved === 0 && at - h.busyAt >= IDLE_MS
    }
    const round = Effect.suspend(() => {
      const done = next
      next = Deferred.unsafeMake<void>(undefined as never)
      const at = now()
      return Effect.forEach(keys, ([keyId, h]) => (due(h, at) ? renew(keyId, h) : Effect.void), {
        concurrency: "unbounded",
        discard: true
      }).pipe(Effect.ensuring(Deferred.succeed(done, undefined)))
    })
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          round,
          Effect.suspend(() => Effect.race(Effect.sleep(every), Deferred.await(kick))).pipe(
            Effect.zipRight(
              Effect.sync(() => {
                kick = Deferred.unsafeMake<void>(undefined as never)
                kicked = false
              })
            )
          )
        )
      )
    )
    yield* Effect.addFinalizer(() =>
      Effect.forEach(
        Array.from(keys.keys()),
        (keyId) => withRedis(CapacityLeases.releaseCredit(keyId, options.replicaId)).pipe(Effect.ignore),
        { concurrency: "unbounded", discard: true }
      )
    )

    // The fleet may still grant the key's credit: Redis unreachable or back empty (its ledger being
    // rebuilt), no grant yet, or unallocated credit covering the amount (the slice merely empty).
    const coming = (h: Held, amount: number) =>
      degraded || h.orphan || h.source === "none" || h.spare >= amount

    const grow: CreditShare.Service["grow"] = (keyIds, amount, deadline) =>
      Effect.suspend(() => {
        const asked = keyIds.flatMap((id) => {
          const h = keys.get(id)
          return h === undefined || h.available === null ? [] : [[id, h] as const]
        })
        if (asked.length === 0) return Effect.void
        // The first ask renews at once; later ones wait for the loop's own rounds, while others
        // shrink to their share on their renewals and an idle one gives its slice back after
        // IDLE_MS. While the fleet may still grant, the reservation waits up to the request's
        // deadline; when its credit is all held by slices, up to GROW_WAIT_MS, then is refused.
        const ask = (first: boolean) =>
          Effect.suspend(() => {
            for (const [, h] of asked) {
              h.asked = true
              h.busyAt = now()
              h.demand += amount
              if (amount > h.unit) h.unit = amount
            }
            const waitFor = next
            if (first) Deferred.unsafeDone(kick, Effect.void)
            // Nothing taken while waiting: an interrupted request leaves at once.
            return Effect.interruptible(Deferred.await(waitFor))
          })
        const short = now() + GROW_WAIT_MS
        const until = deadline ?? short
        const waiting = () => {
          const t = now()
          if (asked.some(([id]) => covers(id, amount))) return false
          return t < short || (t < until && asked.some(([, h]) => coming(h, amount)))
        }
        return Effect.iterate(0, {
          while: (n) => n === 0 || waiting(),
          body: (n) => Effect.as(ask(n === 0), n + 1)
        })
      })

    const { lookup, relookup } = yield* CreditLookups.make({
      replicaId: options.replicaId,
      lockMs,
      shareMs: LOOKUP_SHARE_MS,
      now,
      recorded: (keyId, info) => recorded(keyId, info)
    })

    // What `GET /key` said, for the replicas that wait for another's lookup.
    const recorded = (keyId: string, info: CreditLookup.KeyInfo) =>
      Effect.sync(() => {
        const available =
          info.limitRemaining === null ? null : Math.max(0, Math.round(info.limitRemaining * 1e9))
        const h = keys.get(keyId)
        if (h === undefined) {
          keys.set(keyId, freshHeld(available))
        } else {
          h.available = available
        }
      })

    return {
      covers,
      take: (keyId, amount) => {
        const h = keys.get(keyId)
        if (h === undefined) return
        h.reserved += amount
        h.demand += amount
        h.busyAt = now()
        // Renew ahead: half the slice used wakes the loop now (a tight key renews every tick).
        if (!h.tight && !kicked && 2 * (h.reserved + h.unsent) >= h.granted) {
          kicked = true
          Deferred.unsafeDone(kick, Effect.void)
        }
      },
      settle: (keyId, amount, cost) => {
        const h = keys.get(keyId)
        if (h === undefined) return
        h.reserved = Math.max(0, h.reserved - amount)
        h.unsent += cost
      },
      grow,
      lookup,
      slices: () =>
        Array.from(keys, ([keyId, h]) => ({
          keyId,
          granted: allowance(h),
          reserved: h.reserved,
          spent: h.unsent,
          source: now() < h.expiresAt ? h.source : degraded ? "local" : "none"
        })),
      unsafeDegraded: () => degraded
    }
  })
