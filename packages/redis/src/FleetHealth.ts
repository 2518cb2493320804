/**
 * The `HealthShare` of one replica of a fleet, on `SharedHealth`: ejections and cooldowns are
 * written through (only ever extending), the fleet's are read every `pollEveryMs` (default 50 ms)
 * and merged into each consumer, and a half-open key's trial is the fleet's one probe
 * (`tryProbe`). Redis unreachable: writes and reads are skipped (each replica keeps its own
 * health) and a trial is allowed locally, as without a fleet; a probe call that timed out (it may
 * have been taken) allows none.
 *
 * @since 0.3.0
 */
import type * as HealthShare from "@or-balancer/strategies/HealthShare"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as RedisUnavailable from "./RedisUnavailable.js"
import { RedisStore } from "./RedisStore.js"
import * as SharedHealth from "./SharedHealth.js"

/**
 * @since 0.3.0
 * @category Models
 */
export interface Options {
  readonly replicaId: string
  /** How often the fleet's health is merged in (default 50 ms). */
  readonly pollEveryMs?: number | undefined
  /** How long one replica holds a key's trial (default 2 s). */
  readonly trialMs?: number | undefined
}

/** How soon a failed write of the fleet's health is sent again. */
const RETRY_MS = 50

/**
 * @since 0.3.0
 * @category Constructors
 */
export const make = (options: Options): Effect.Effect<HealthShare.Service, never, RedisStore | Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* RedisStore
    const every = options.pollEveryMs ?? 50
    const trialMs = options.trialMs ?? 2_000
    const clock = yield* Effect.clock
    const consumers = new Set<HealthShare.Consumer>()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const withRedis = <A, E>(effect: Effect.Effect<A, E, RedisStore>) =>
      Effect.provideService(effect, RedisStore, redis)

    // The fleet's accounts out, for consumers that keep account state (one read for all of them).
    const pollAccounts = Effect.suspend(() => {
      const takers = Array.from(consumers).filter((c) => c.mergeAccount !== undefined)
      if (takers.length === 0) return Effect.void
      return Effect.map(withRedis(SharedHealth.readAccountsOut), (all) => {
        for (const a of all) for (const c of takers) c.mergeAccount!(a.account, a.remainingMs, a.reason)
      }).pipe(Effect.ignore)
    })
    const poll = Effect.suspend(() =>
      Effect.forEach(
        Array.from(consumers),
        (c) =>
          Effect.map(withRedis(SharedHealth.readHealth(c.keys())), (all) => {
            for (const h of all) {
              const remaining = Math.max(h.cooldownMs, h.ejectedMs)
              if (remaining > 0) {
                const reason = (h.ejectedMs >= h.cooldownMs ? h.ejectedReason : h.cooldownReason) ?? "fleet"
                c.merge(h.keyId, remaining, reason)
              }
            }
          }),
        { discard: true }
      ).pipe(Effect.ignore)
    )
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          Effect.all([poll, pollAccounts], { concurrency: 2, discard: true }),
          Effect.sleep(every)
        )
      )
    )

    // A write that failed (a timeout under load, Redis away a moment) is sent again while the state
    // lasts, with what is left of it: dropped, the others would never learn of it. Writes only
    // extend, so one applied twice (its reply lost) ends no later than the state itself.
    const writeWhile = (
      forMs: number,
      write: (leftMs: number) => Effect.Effect<unknown, unknown, RedisStore>
    ) => {
      const start = clock.unsafeCurrentTimeMillis()
      const left = () => forMs - (clock.unsafeCurrentTimeMillis() - start)
      runFork(
        Effect.suspend(() => withRedis(write(left()))).pipe(
          Effect.retry({ schedule: Schedule.spaced(RETRY_MS), while: () => left() > RETRY_MS }),
          Effect.ignore
        )
      )
    }

    return {
      trialMs,
      publish: (keyId, forMs, reason, kind) =>
        writeWhile(forMs, (ms) =>
          kind === "cooldown"
            ? SharedHealth.extendCooldown(keyId, ms, reason)
            : SharedHealth.eject(keyId, ms, reason)
        ),
      publishAccount: (account, forMs, reason) =>
        writeWhile(forMs, (ms) => SharedHealth.accountOut(account, ms, reason)),
      // Redis unreachable: the replica tests the key itself, as it would alone. A timeout is not
      // that: the probe may have been taken (by this call, or by another replica whose call was
      // answered), so no trial now; the key is tried again after `trialMs`, and a Redis that keeps
      // timing out opens the breaker, after which the replica does test the key itself. (All
      // replicas of a lagging process timed out at once, and each tested the key.)
      tryTrial: (keyId) =>
        withRedis(SharedHealth.tryProbe(keyId, options.replicaId, trialMs)).pipe(
          Effect.catchAll((e) => Effect.succeed(RedisUnavailable.isUnreachable(e)))
        ),
      endTrial: (keyId, healthy) => {
        runFork(withRedis(SharedHealth.endProbe(keyId, options.replicaId, healthy)).pipe(Effect.ignore))
      },
      register: (consumer) => {
        consumers.add(consumer)
        return () => consumers.delete(consumer)
      }
    }
  })
