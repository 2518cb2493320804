/**
 * Redis emptied (FLUSHALL, or restarted empty) while replicas hold permit slices and have requests
 * running on them: the new table must not hand those permits out again. On its own server, since
 * it flushes it.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { CapacityLeases, LeaseKeeper, RedisStore } from "../src/index.js"
import { freshKeys, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())
const freshKey = freshKeys("restart")

const keeperOn = (replicaId: string) =>
  Effect.flatMap(RedisStore.make({ url: server.url }), (store) =>
    Effect.provideService(
      LeaseKeeper.make({ replicaId, replicas: 3, ttlMs: 1_500 }),
      RedisStore.RedisStore,
      store
    )
  )

describe("an emptied Redis", () => {
  it.scopedLive("re-registers the slices replicas still hold before granting new ones; the cap holds", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const [a, b, c] = yield* Effect.all([keeperOn("a"), keeperOn("b"), keeperOn("c")])
      const cap = 4
      const total = Effect.map(
        Effect.provide(CapacityLeases.inspectPermits(key), RedisStore.layer({ url: server.url })),
        (s) => s.totalGranted
      )
      // a and b each run 2 requests on a slice of 2; c holds nothing.
      assert.strictEqual((yield* a.renewPermits(key, { want: 2, cap, inUse: 2 })).amount, 2)
      assert.strictEqual((yield* b.renewPermits(key, { want: 2, cap, inUse: 2 })).amount, 2)
      assert.strictEqual((yield* c.renewPermits(key, { want: 4, cap })).amount, 0)

      yield* Effect.promise(() => server.admin().flushall())
      // c renews first on the empty Redis: a's and b's running requests are not its to take.
      assert.strictEqual((yield* c.renewPermits(key, { want: 4, cap })).amount, 0)
      yield* a.renewPermits(key, { want: 2, cap, inUse: 2 })
      yield* b.renewPermits(key, { want: 2, cap, inUse: 2 })
      // Their running requests are on record again; nothing is left for c.
      assert.strictEqual(yield* total, cap)
      assert.strictEqual((yield* c.renewPermits(key, { want: 4, cap })).amount, 0)
      assert.strictEqual(yield* total, cap)
      // What a re-registered replica gives back goes to the others at once.
      assert.strictEqual((yield* a.renewPermits(key, { want: 0, cap, inUse: 0 })).amount, 0)
      assert.strictEqual((yield* c.renewPermits(key, { want: 4, cap })).amount, 2)
      assert.isAtMost(yield* total, cap)
      // One TTL on, every slice from before has expired or been re-registered: back to normal.
      yield* Effect.sleep(1_600)
      yield* b.renewPermits(key, { want: 1, cap, inUse: 1 })
      assert.strictEqual((yield* c.renewPermits(key, { want: 4, cap, inUse: 2 })).amount, 3)
      assert.isAtMost(yield* total, cap)
    })
  )

  it.scopedLive(
    "a key's first use is granted at once; after a flush a lone replica gets its claim back",
    () =>
      Effect.gen(function* () {
        const key = freshKey()
        const a = yield* keeperOn("a")
        assert.strictEqual((yield* a.renewPermits(key, { want: 3, cap: 4 })).amount, 3)
        yield* Effect.promise(() => server.admin().flushall())
        // Recovering: the replica gets back what it held, and grows only after one TTL.
        assert.strictEqual((yield* a.renewPermits(key, { want: 4, cap: 4 })).amount, 3)
      })
  )
})
