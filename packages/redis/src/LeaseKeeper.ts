/**
 * What one replica holds, and what it falls back to. The keeper remembers each key's permit and
 * credit slices with their expiry on the replica's own clock, so the hot path reads them
 * synchronously (`unsafePermits`, `unsafeCredit`) and only renewals, in the background, call Redis.
 *
 * When Redis cannot be reached (down, slow, breaker open) a renewal does not fail: the replica
 * keeps what it holds until it expires, and then runs on a local share, the total ÷ the fleet's
 * replica count, never the whole; `degraded` says so until a renewal reaches Redis again, which
 * resyncs the slices (after a Redis restart, from empty) without a restart of the replica.
 *
 * While a renewal is in flight the replica may use no more than the `inUse` it sent: Redis may
 * shrink the slice to that and hand the rest to another replica before the answer arrives, so
 * growing meanwhile could overshoot the cap. (A renewal takes a round trip, well under a
 * millisecond on a LAN.)
 *
 * A local share is blind to the rest of the fleet: if only this replica loses Redis while the
 * others still reach it, the fleet can exceed a cap by this replica's share until it reconnects.
 * So a call that merely timed out gives no local share: Redis may be reachable and granting the
 * others the whole cap (a busy replica's first renewals at a cold start, say). The replica keeps
 * what it holds and waits; only Redis unreachable (disconnected, rejected, or the breaker open,
 * which a few timeouts in a row do) lets it run on a local share.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as CapacityLeases from "./CapacityLeases.js"
import { isUnreachable, type RedisUnavailable } from "./RedisUnavailable.js"
import { RedisStore } from "./RedisStore.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  readonly replicaId: string
  /** The fleet's size, for the local share when Redis is unreachable. */
  readonly replicas: number
  /** Slice lifetime; renew well within it (a third is usual). */
  readonly ttlMs: number
}

/**
 * - `redis`: granted by Redis at the last renewal.
 * - `held`: Redis unreachable; the last grant, kept until it expires.
 * - `local`: Redis unreachable and the grant expired; the local share.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Slice {
  /** What the replica may use: permits below the grant while it drains to its share. */
  readonly amount: number
  /** On the replica's clock (`Clock.currentTimeMillis`). */
  readonly expiresAt: number
  readonly source: "redis" | "held" | "local"
  /** What the fleet held in all at the last grant (permits), when Redis said. */
  readonly pooled?: number | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Renews the key's permit slice; never fails (see the module doc). */
  readonly renewPermits: (
    keyId: string,
    demand: { readonly want: number; readonly cap: number; readonly inUse?: number | undefined }
  ) => Effect.Effect<Slice>
  /** Renews the key's credit slice (micro-dollars); never fails. */
  readonly renewCredit: (
    keyId: string,
    demand: { readonly want: number; readonly available: number; readonly inUse?: number | undefined }
  ) => Effect.Effect<Slice>
  /** Permits this replica may have in use on the key now. */
  readonly unsafePermits: (keyId: string, cap: number) => number
  /** Credit this replica may reserve on the key now (micro-dollars). */
  readonly unsafeCredit: (keyId: string, available: number) => number
  /**
   * An even share of `total` over the fleet (its configured size, or more live replicas if Redis
   * reported them): what water-filling guarantees every replica that wants it.
   */
  readonly unsafeEvenShare: (total: number) => number
  /** Whether the last call to Redis failed: the replica runs on what it holds or on local shares. */
  readonly degraded: Effect.Effect<boolean>
  readonly unsafeDegraded: () => boolean
  /** Gives the key's slices back (best effort: a slice Redis cannot take back expires anyway). */
  readonly release: (keyId: string) => Effect.Effect<void>
}

/**
 * 1 while this replica runs on what it holds or on local shares because Redis is unreachable.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const degradedGauge = Metric.gauge("or_balancer_store_degraded", {
  description: "1 while Redis is unreachable and this replica runs on held or local shares"
})

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (options: Options): Effect.Effect<Service, never, RedisStore> =>
  Effect.gen(function* () {
    const redis = yield* RedisStore
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const permits = new Map<string, Slice>()
    const credit = new Map<string, Slice>()
    // The `inUse` sent by a renewal still in flight, per slice table and key (one renewal per key
    // at a time: the background loop that calls them runs them in turn).
    const pending = new Map<Map<string, Slice>, Map<string, number>>([
      [permits, new Map()],
      [credit, new Map()]
    ])
    // Per key: the permit table's generation last seen and when (see `CapacityLeases.PermitRequest`).
    const generations = new Map<string, { born: number; grantedAt: number }>()
    let degraded = false
    // The last failure says Redis is unreachable (not merely slow): local shares apply.
    let cutOff = false
    // The fleet's size: as configured, raised by the live replicas Redis reports in each grant.
    let live = 1
    const localShare = (total: number) => Math.floor(total / Math.max(1, options.replicas, live))

    const current = (slices: Map<string, Slice>, keyId: string, total: number): number => {
      const s = slices.get(keyId)
      const amount =
        s !== undefined && now() < s.expiresAt ? s.amount : degraded && cutOff ? localShare(total) : 0
      const frozen = pending.get(slices)!.get(keyId)
      return frozen === undefined ? amount : Math.min(amount, frozen)
    }

    const renew = (
      slices: Map<string, Slice>,
      keyId: string,
      total: number,
      inUse: number | undefined,
      call: Effect.Effect<
        CapacityLeases.Grant & { readonly totalGranted?: number; readonly usable?: number },
        RedisUnavailable,
        RedisStore
      >
    ): Effect.Effect<Slice> =>
      Effect.suspend(() => {
        const sentAt = now()
        const frozen = pending.get(slices)!
        frozen.set(keyId, Math.min(frozen.get(keyId) ?? Infinity, inUse ?? 0))
        return call.pipe(
          Effect.ensuring(Effect.sync(() => frozen.delete(keyId))),
          Effect.provideService(RedisStore, redis),
          Effect.tapBoth({
            onSuccess: () => (degraded ? Metric.set(degradedGauge, 0) : Effect.void),
            onFailure: () => (degraded ? Effect.void : Metric.set(degradedGauge, 1))
          }),
          Effect.match({
            onSuccess: (grant): Slice => {
              degraded = false
              cutOff = false
              live = Math.max(live, grant.liveReplicas)
              // Counted from when the call left: the server's TTL started later, so this is safe.
              // Permits: over its share (kept up by permits in use), the slice drains to `usable`.
              const s: Slice = {
                amount: grant.usable ?? grant.granted,
                expiresAt: sentAt + grant.ttlMs,
                source: "redis",
                pooled: grant.totalGranted
              }
              slices.set(keyId, s)
              return s
            },
            onFailure: (error): Slice => {
              degraded = true
              cutOff = isUnreachable(error)
              const at = now()
              const held = slices.get(keyId)
              // A call that timed out may still have been applied: Redis may have shrunk the slice
              // to the `inUse` sent and handed the rest to another replica, so no more than that is
              // kept (else both use it: the cap overshot under load).
              const s: Slice =
                held !== undefined && at < held.expiresAt && held.source !== "local"
                  ? { ...held, amount: Math.min(held.amount, inUse ?? held.amount), source: "held" }
                  : cutOff || (held !== undefined && at < held.expiresAt)
                    ? { amount: localShare(total), expiresAt: at + options.ttlMs, source: "local" }
                    : // Slow, nothing held: nothing until Redis answers or the breaker opens.
                      { amount: 0, expiresAt: at, source: "held" }
              slices.set(keyId, s)
              return s
            }
          })
        )
      })

    return {
      renewPermits: (keyId, d) =>
        Effect.suspend(() => {
          const at = now()
          const s = permits.get(keyId)
          // What this replica may still be using: Redis re-registers it if it lost the slice.
          const claim = s !== undefined && at < s.expiresAt ? s.amount : 0
          const gen = generations.get(keyId)
          // A table outlives its last grant by a minute: past that, its absence proves nothing.
          const lastBorn =
            gen !== undefined && (claim > 0 || (d.inUse ?? 0) > 0 || at - gen.grantedAt < 60_000)
              ? gen.born
              : 0
          return renew(
            permits,
            keyId,
            d.cap,
            d.inUse,
            CapacityLeases.acquirePermits({
              keyId,
              replicaId: options.replicaId,
              want: d.want,
              cap: d.cap,
              ttlMs: options.ttlMs,
              inUse: d.inUse,
              claim,
              lastBorn
            }).pipe(Effect.tap((g) => generations.set(keyId, { born: g.born, grantedAt: at })))
          )
        }),
      renewCredit: (keyId, d) =>
        renew(
          credit,
          keyId,
          d.available,
          d.inUse,
          CapacityLeases.reserveCredit({
            keyId,
            replicaId: options.replicaId,
            want: d.want,
            available: d.available,
            ttlMs: options.ttlMs,
            inUse: d.inUse
          })
        ),
      unsafePermits: (keyId, cap) => current(permits, keyId, cap),
      unsafeCredit: (keyId, available) => current(credit, keyId, available),
      unsafeEvenShare: localShare,
      degraded: Effect.sync(() => degraded),
      unsafeDegraded: () => degraded,
      release: (keyId) =>
        Effect.zip(
          CapacityLeases.releasePermits(keyId, options.replicaId),
          CapacityLeases.releaseCredit(keyId, options.replicaId),
          { concurrent: true }
        ).pipe(
          Effect.provideService(RedisStore, redis),
          Effect.ignore,
          Effect.ensuring(
            Effect.sync(() => {
              permits.delete(keyId)
              credit.delete(keyId)
            })
          )
        )
    }
  })
