import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as fc from "fast-check"
import { LeaseKeeper, RedisStore } from "../src/index.js"
import { freshKeys, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const freshKey = freshKeys("keeper")

/**
 * Three replicas serve "requests" on one key within what their keepers allow, renewing in the
 * background with their demand and what they have in use. `upstream` counts requests in flight
 * over all replicas, as the upstream would see them.
 */
const fleet = (cap: number, demands: ReadonlyArray<ReadonlyArray<number>>, ms: number) =>
  Effect.gen(function* () {
    const key = freshKey()
    const upstream = { now: 0, max: 0, served: 0 }
    const perReplica = [0, 0, 0]
    const replicas = yield* Effect.forEach([0, 1, 2], (i) =>
      Effect.gen(function* () {
        const store = yield* RedisStore.make({ url: server.url })
        const keeper = yield* LeaseKeeper.make({ replicaId: `r${i}`, replicas: 3, ttlMs: 1_000 }).pipe(
          Effect.provideService(RedisStore.RedisStore, store)
        )
        return { i, keeper, inFlight: 0 }
      })
    )
    const deadline = performance.now() + ms
    const renewLoop = (r: (typeof replicas)[number]) =>
      Effect.gen(function* () {
        let step = 0
        while (performance.now() < deadline) {
          const want = demands[r.i]![step++ % demands[r.i]!.length]!
          yield* r.keeper.renewPermits(key, { want, cap, inUse: r.inFlight })
          yield* Effect.sleep(15)
        }
      })
    // Counted in as the request is started (synchronously), counted out when it ends.
    const start = (r: (typeof replicas)[number]) => {
      r.inFlight++
      upstream.now++
      upstream.max = Math.max(upstream.max, upstream.now)
    }
    const request = (r: (typeof replicas)[number]) =>
      Effect.gen(function* () {
        yield* Effect.sleep(1 + (upstream.served % 4))
        upstream.now--
        upstream.served++
        perReplica[r.i]!++
        r.inFlight--
      })
    const requestLoop = (r: (typeof replicas)[number]) =>
      Effect.gen(function* () {
        while (performance.now() < deadline) {
          if (r.inFlight < r.keeper.unsafePermits(key, cap)) {
            start(r)
            yield* Effect.fork(request(r))
          } else yield* Effect.sleep(1)
        }
      })
    const fibers = yield* Effect.forEach(replicas, (r) =>
      Effect.fork(Effect.zip(renewLoop(r), requestLoop(r), { concurrent: true }))
    )
    yield* Fiber.joinAll(fibers)
    yield* Effect.sleep(10)
    return { ...upstream, perReplica }
  })

describe("LeaseKeeper", () => {
  it.scopedLive(
    "3 replicas never have more requests in flight on a key than its cap (property)",
    () =>
      Effect.gen(function* () {
        const prop = fc.asyncProperty(
          fc.integer({ min: 1, max: 8 }),
          fc.array(fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 1, maxLength: 5 }), {
            minLength: 3,
            maxLength: 3
          }),
          (cap, demands) =>
            Effect.runPromise(
              Effect.scoped(fleet(cap, demands, 400)).pipe(
                Effect.map((r) => {
                  const anyDemand = demands.some((d) => d.some((w) => w > 0))
                  return r.max <= cap && (!anyDemand || r.served > 0)
                })
              )
            )
        )
        yield* Effect.promise(() => fc.assert(prop, { numRuns: 6 }))
      }),
    60_000
  )

  it.scopedLive("demand moves capacity: busy replicas share the cap, the cap is used", () =>
    Effect.gen(function* () {
      const r = yield* fleet(6, [[6], [6], [0]], 600)
      assert.isAtMost(r.max, 6)
      // The whole cap was in use at some point, and both busy replicas got a part of it.
      assert.strictEqual(r.max, 6)
      assert.isAbove(r.perReplica[0]!, 0)
      assert.isAbove(r.perReplica[1]!, 0)
      assert.strictEqual(r.perReplica[2], 0)
    })
  )
})
