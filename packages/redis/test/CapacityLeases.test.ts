import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import { CapacityLeases, RedisStore } from "../src/index.js"
import { asReplica, freshKeys, replicasOn, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const replica = () => RedisStore.layer({ url: server.url })
// Replicas: one connection each, as separate processes would have.
const replicas = (n: number) => replicasOn(server, n)
const run = asReplica

const freshKey = freshKeys("key")

describe("permit leases", () => {
  it.scopedLive("a lone replica gets min(want, cap)", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const a = yield* CapacityLeases.acquirePermits({
        keyId: key,
        replicaId: "a",
        want: 4,
        cap: 10,
        ttlMs: 5_000
      })
      assert.strictEqual(a.granted, 4)
      assert.strictEqual(a.liveReplicas, 1)
      assert.isTrue(a.ttlMs === 5_000)
      const more = yield* CapacityLeases.acquirePermits({
        keyId: key,
        replicaId: "a",
        want: 50,
        cap: 10,
        ttlMs: 5_000
      })
      assert.strictEqual(more.granted, 10)
    }).pipe(Effect.provide(replica()))
  )

  it.scopedLive("demand moves slices: a newcomer gets its fair share once the holder renews", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const acquire = (replicaId: string, want: number, inUse = 0) =>
        CapacityLeases.acquirePermits({ keyId: key, replicaId, want, cap: 10, ttlMs: 5_000, inUse })
      assert.strictEqual((yield* acquire("a", 10)).granted, 10)
      // Nothing is free yet: b's demand is recorded, a is shrunk to its share when it renews.
      const b0 = yield* acquire("b", 10)
      assert.strictEqual(b0.granted, 0)
      assert.strictEqual(b0.liveReplicas, 2)
      assert.strictEqual((yield* acquire("a", 10)).granted, 5)
      assert.strictEqual((yield* acquire("b", 10)).granted, 5)
      // A third replica: water-filling splits 10 as 3 + 3 + 4 once everyone has renewed.
      yield* acquire("c", 10)
      yield* acquire("a", 10)
      yield* acquire("b", 10)
      const c = yield* acquire("c", 10)
      const s = yield* CapacityLeases.inspectPermits(key)
      assert.deepStrictEqual(s.slices.map((x) => x.granted).sort(), [3, 3, 4])
      assert.strictEqual(c.liveReplicas, 3)
      assert.strictEqual(s.totalGranted, 10)
    }).pipe(Effect.provide(replica()))
  )

  it.scopedLive("what one replica does not want goes to the others", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const acquire = (replicaId: string, want: number) =>
        CapacityLeases.acquirePermits({ keyId: key, replicaId, want, cap: 10, ttlMs: 5_000 })
      yield* acquire("a", 2)
      assert.strictEqual((yield* acquire("b", 10)).granted, 8)
    }).pipe(Effect.provide(replica()))
  )

  it.scopedLive("a renewal never takes away permits in use", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const acquire = (replicaId: string, want: number, inUse: number) =>
        CapacityLeases.acquirePermits({ keyId: key, replicaId, want, cap: 10, ttlMs: 5_000, inUse })
      yield* acquire("a", 10, 0)
      yield* acquire("b", 10, 0)
      // a's share is 5, but 8 of its permits are running requests: it keeps 8, b gets the other 2.
      assert.strictEqual((yield* acquire("a", 10, 8)).granted, 8)
      assert.strictEqual((yield* acquire("b", 10, 0)).granted, 2)
      // Released, a's slice goes back to the pool for b.
      assert.strictEqual(yield* CapacityLeases.releasePermits(key, "a"), 8)
      assert.strictEqual((yield* acquire("b", 10, 2)).granted, 10)
    }).pipe(Effect.provide(replica()))
  )

  it.scopedLive("a replica that stops renewing loses its slice within the TTL; the others take it", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const [a, b] = yield* replicas(2)
      const ttlMs = 300
      const acquire = (store: RedisStore.Service, replicaId: string) =>
        run(store, CapacityLeases.acquirePermits({ keyId: key, replicaId, want: 10, cap: 10, ttlMs }))
      assert.strictEqual((yield* acquire(a, "a")).granted, 10)
      assert.strictEqual((yield* acquire(b, "b")).granted, 0)
      // a is "SIGKILLed": it never calls again. Within one TTL b holds the whole cap.
      yield* Effect.sleep(ttlMs + 20)
      assert.strictEqual((yield* acquire(b, "b")).granted, 10)
      const s = yield* run(b, CapacityLeases.inspectPermits(key))
      assert.deepStrictEqual(
        s.slices.map((x) => x.replicaId),
        ["b"]
      )
    })
  )

  it.scopedLive(
    "3 replicas hammering concurrently never hold more than the cap (property)",
    () =>
      Effect.gen(function* () {
        const ids = ["r1", "r2", "r3"] as const
        const layers = yield* replicas(3)
        const op = fc.record({
          replica: fc.integer({ min: 0, max: 2 }),
          want: fc.integer({ min: 0, max: 12 }),
          inUse: fc.integer({ min: 0, max: 12 }),
          release: fc.boolean()
        })
        const prop = fc.asyncProperty(
          fc.integer({ min: 1, max: 10 }),
          fc.array(op, { minLength: 10, maxLength: 60 }),
          (cap, ops) =>
            Effect.runPromise(
              Effect.gen(function* () {
                const key = freshKey()
                // Each replica runs its own ops in order; the three run at once.
                const byReplica = ids.map((_, i) => ops.filter((o) => o.replica === i))
                const held = [0, 0, 0]
                let worst = 0
                yield* Effect.forEach(
                  byReplica,
                  (mine, i) =>
                    Effect.forEach(mine, (o) =>
                      run(
                        layers[i]!,
                        Effect.gen(function* () {
                          if (o.release) {
                            yield* CapacityLeases.releasePermits(key, ids[i]!)
                            held[i] = 0
                          } else {
                            const g = yield* CapacityLeases.acquirePermits({
                              keyId: key,
                              replicaId: ids[i]!,
                              want: o.want,
                              cap,
                              ttlMs: 10_000,
                              inUse: Math.min(o.inUse, held[i]!)
                            })
                            held[i] = g.granted
                          }
                          const s = yield* CapacityLeases.inspectPermits(key)
                          worst = Math.max(worst, s.totalGranted)
                        })
                      )
                    ),
                  { concurrency: "unbounded" }
                )
                const s = yield* run(layers[0]!, CapacityLeases.inspectPermits(key))
                // Redis's view, read atomically after every step, and the replicas' own final views.
                return worst <= cap && s.totalGranted <= cap && held.reduce((x, y) => x + y, 0) <= cap
              })
            )
        )
        yield* Effect.promise(() => fc.assert(prop, { numRuns: 25 }))
      }),
    60_000
  )
})
