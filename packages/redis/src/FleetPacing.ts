/**
 * The `PacingShare` of one replica of a fleet: a window `AccountPacing` learns (a limit, a length,
 * a 429's reset) is written to Redis in the background, and every `pollEveryMs` (default 50 ms) one
 * script marks this replica live and reads every window with the count of live replicas, which
 * each consumer adopts. So a window learned on one replica paces the others within a poll, each
 * admitting its share (the limit ÷ live replicas), and no request waits on Redis. Redis
 * unreachable: nothing is shared, each replica keeps pacing by what it has.
 *
 * @since 0.4.0
 */
import type * as PacingShare from "@or-balancer/strategies/PacingShare"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Keys from "./internal/keys.js"
import * as Lua from "./internal/lua.js"
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

/**
 * @since 0.4.0
 * @category Constructors
 */
export const make = (options: Options): Effect.Effect<PacingShare.Service, never, RedisStore | Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* RedisStore
    const every = options.pollEveryMs ?? 50
    // A replica that missed a few polls (or died) stops counting towards the shares.
    const aliveMs = Math.max(1_000, every * 10)
    const consumers = new Set<PacingShare.Consumer>()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())

    const poll = Effect.suspend(() =>
      consumers.size === 0
        ? Effect.void
        : Effect.map(
            redis.run(
              Lua.pacingSync,
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
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(poll, Effect.sleep(every))))

    return {
      publish: (id, learned) => {
        runFork(
          redis
            .run(
              Lua.pacingPublish,
              [Keys.pacingWindows],
              [
                id,
                learned.limit === undefined ? -1 : Math.floor(learned.limit),
                learned.windowMs === undefined ? -1 : Math.ceil(learned.windowMs),
                Math.max(0, Math.ceil(learned.closedMs))
              ]
            )
            .pipe(Effect.ignore)
        )
      },
      register: (consumer) => {
        consumers.add(consumer)
        return () => consumers.delete(consumer)
      }
    }
  })
