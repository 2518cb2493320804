/**
 * One replica of a fleet sharing limits and health on Redis, as layers for an Effect program:
 * `layer` opens the connection and provides `Capacity` (leased concurrency caps), `CreditShare`
 * (leased credit, one `GET /key` per key at a time over the fleet), `HealthShare` (shared
 * ejections, cooldowns, probes and accounts out of credit) and `PacingShare` (learned rate windows)
 * to `ConcurrencyLimited`, `CreditLedger`, `HealthAware` and `AccountPacing`.
 * Provide it below the strategy layers and the ledger.
 *
 * @since 0.3.0
 */
import * as Capacity from "@or-balancer/strategies/Capacity"
import * as CreditShare from "@or-balancer/strategies/CreditShare"
import * as HealthShare from "@or-balancer/strategies/HealthShare"
import * as PacingShare from "@or-balancer/strategies/PacingShare"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as FleetCapacity from "./FleetCapacity.js"
import * as FleetCredit from "./FleetCredit.js"
import * as FleetHealth from "./FleetHealth.js"
import * as FleetPacing from "./FleetPacing.js"
import * as LeaseKeeper from "./LeaseKeeper.js"
import * as RedisStore from "./RedisStore.js"

/**
 * @since 0.3.0
 * @category Models
 */
export interface Options extends RedisStore.Options {
  /** This replica's id in the fleet (default: a random one). */
  readonly replicaId?: string | undefined
  /**
   * The fleet's size, for the local share when Redis is unreachable (default 1). The live
   * replicas Redis last reported holding slices raise it, so a fleet that grew needs no edit.
   */
  readonly replicas?: number | undefined
  readonly leaseTtlMs?: number | undefined
  readonly renewEveryMs?: number | undefined
  readonly pollEveryMs?: number | undefined
}

/**
 * The fleet's view of this replica, for status pages and metrics.
 *
 * @since 0.3.0
 * @category Context
 */
export class Fleet extends Context.Tag("@or-balancer/redis/Fleet")<
  Fleet,
  {
    readonly replicaId: string
    readonly keeper: LeaseKeeper.Service
    readonly credit: FleetCredit.Service
  }
>() {}

/**
 * @since 0.3.0
 * @category Layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  | Capacity.Capacity
  | CreditShare.CreditShare
  | HealthShare.HealthShare
  | PacingShare.PacingShare
  | Fleet
  | RedisStore.RedisStore,
  ConfigError.ConfigError
> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const replicaId =
        options.replicaId ??
        `replica-${(yield* Effect.randomWith((r) => r.nextIntBetween(0, 2 ** 31))).toString(36)}`
      const store = yield* RedisStore.make(options)
      const provide = Effect.provideService(RedisStore.RedisStore, store)
      const { capacity, keeper } = yield* provide(
        FleetCapacity.make({
          replicaId,
          replicas: options.replicas ?? 1,
          ttlMs: options.leaseTtlMs,
          renewEveryMs: options.renewEveryMs
        })
      )
      const credit = yield* provide(
        FleetCredit.make({
          replicaId,
          replicas: options.replicas ?? 1,
          ttlMs: options.leaseTtlMs,
          renewEveryMs: options.renewEveryMs
        })
      )
      const health = yield* provide(FleetHealth.make({ replicaId, pollEveryMs: options.pollEveryMs }))
      const pacing = yield* provide(FleetPacing.make({ replicaId, pollEveryMs: options.pollEveryMs }))
      return Context.make(Capacity.Capacity, capacity).pipe(
        Context.add(HealthShare.HealthShare, health),
        Context.add(PacingShare.PacingShare, pacing),
        Context.add(CreditShare.CreditShare, credit),
        Context.add(Fleet, { replicaId, keeper, credit }),
        Context.add(RedisStore.RedisStore, store)
      )
    })
  )
