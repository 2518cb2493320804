/**
 * The `PacingShare` of one replica of a fleet: a window `AccountPacing` learns (a limit, a length,
 * a 429's reset) is written to Redis in the background, and every `pollEveryMs` (default 50 ms) one
 * script marks this replica live and reads every window with the count of live replicas, which
 * each consumer adopts. So a window learned on one replica paces the others within a poll, each
 * admitting its share (the limit ÷ live replicas), and no request waits on Redis. Redis
 * unreachable: nothing is shared, each replica keeps pacing by what it has; a window learned
 * meanwhile is written at each poll until a write goes through (dropped, the others would never
 * learn it: a burst of timeouts on a loaded machine opens the breaker).
 *
 * @since 0.4.0
 */
import type * as PacingShare from "@or-balancer/strategies/PacingShare"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Keys from "./internal/keys.js"
import * as FleetLua from "./internal/fleetLua.js"
import { RedisStore } from "./RedisStore.js"

/**
 * @since 0.4.0
 * @category Models
 */
export interface Options {
  readonly replicaId: string
  /** How often the fleet's windows are read (default 50 ms). */
  readonly pollEveryMs?: number | undefined
}

interface Pending {
  readonly limit: number | undefined
  readonly windowMs: number | undefined
  readonly closedUntil: number
}

/**
 * @since 0.4.0
 * @category Constructors
 */
export const make = (options: Options): Effect.Effect<PacingShare.Service, never, RedisStore | Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* RedisStore
    const every = options.pollEveryMs ?? 50
    const clock = yield* Effect.clock
    // A replica that missed a few polls (or died) stops counting towards the shares.
    const aliveMs = Math.max(1_000, every * 10)
    const consumers = new Set<PacingShare.Consumer>()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    // Windows learned here whose write has not gone through yet, merged as the script merges them
    // (the latest limit and length, the furthest closing); `closedUntil` on this replica's clock.
    const pending = new Map<string, Pending>()

    const write = (id: string) =>
      Effect.suspend(() => {
        const p = pending.get(id)
        if (p === undefined) return Effect.void
        return redis
          .run(
            FleetLua.pacingPublish,
            [Keys.pacingWindows],
            [
              id,
              p.limit === undefined ? -1 : Math.floor(p.limit),
              p.windowMs === undefined ? -1 : Math.ceil(p.windowMs),
              Math.max(0, Math.ceil(p.closedUntil - clock.unsafeCurrentTimeMillis()))
            ]
          )
          .pipe(
            // Sent: done, unless a newer window was learned meanwhile (it is written next).
            Effect.tap(() => Effect.sync(() => pending.get(id) === p && pending.delete(id))),
            Effect.ignore
          )
      })
    const flush = Effect.suspend(() =>
      pending.size === 0 ? Effect.void : Effect.forEach(Array.from(pending.keys()), write, { discard: true })
    )

    const poll = Effect.suspend(() =>
      consumers.size === 0
        ? Effect.void
        : Effect.map(
            redis.run(
              FleetLua.pacingSync,
              [Keys.pacingWindows, Keys.pacingReplicas],
              [options.replicaId, aliveMs]
            ),
            (reply) => {
              const a = reply as ReadonlyArray<string | number>
              const live = Number(a[0])
              for (let i = 1; i + 3 < a.length; i += 4) {
                const limit = Number(a[i + 1])
                const windowMs = Number(a[i + 2])
                const learned: PacingShare.Learned = {
                  limit: limit < 0 ? undefined : limit,
                  windowMs: windowMs < 0 ? undefined : windowMs,
                  closedMs: Number(a[i + 3])
                }
                for (const c of consumers) c.adopt(String(a[i]), learned, live)
              }
            }
          ).pipe(Effect.ignore)
    )
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.zipRight(flush, poll), Effect.sleep(every)))
    )

    return {
      publish: (id, learned) => {
        const prev = pending.get(id)
        const closedUntil = clock.unsafeCurrentTimeMillis() + Math.max(0, learned.closedMs)
        pending.set(id, {
          limit: learned.limit ?? prev?.limit,
          windowMs: learned.windowMs ?? prev?.windowMs,
          closedUntil: Math.max(closedUntil, prev?.closedUntil ?? 0)
        })
        runFork(write(id))
      },
      register: (consumer) => {
        consumers.add(consumer)
        return () => consumers.delete(consumer)
      }
    }
  })
