import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import { CapacityLeases, RedisStore } from "../src/index.js"
import { asReplica, freshKeys, replicasOn, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const replicas = (n: number) => replicasOn(server, n)
const run = asReplica

const freshKey = freshKeys("credit")

describe("credit slices", () => {
  it.scopedLive("reserve, settle the actual spend, return the rest", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const reserve = (replicaId: string, want: number, available = 1_000_000) =>
        CapacityLeases.reserveCredit({ keyId: key, replicaId, want, available, ttlMs: 5_000 })
      const a = yield* reserve("a", 600_000)
      assert.strictEqual(a.granted, 600_000)
      assert.strictEqual(a.unallocated, 400_000)
      // The ledger is seeded once: b's stale, larger figure does not add credit.
      const b = yield* reserve("b", 900_000, 5_000_000)
      assert.strictEqual(b.granted, 400_000)
      assert.strictEqual(b.unallocated, 0)
      assert.strictEqual(yield* CapacityLeases.settleCredit(key, "a", 250_000), 350_000)
      assert.strictEqual(yield* CapacityLeases.releaseCredit(key, "a"), 350_000)
      const s = yield* CapacityLeases.inspectCredit(key)
      assert.strictEqual(s.base, 1_000_000)
      assert.strictEqual(s.spent, 250_000)
      assert.strictEqual(s.totalGranted, 400_000)
      // What a gave back (and did not spend) is b's to take.
      assert.strictEqual((yield* reserve("b", 900_000)).granted, 750_000)
    }).pipe(Effect.provide(RedisStore.layer({ url: server.url })))
  )

  it.scopedLive("a settle sent again after a lost reply is counted once; a restarted replica's anew", () =>
    Effect.gen(function* () {
      const key = freshKey()
      yield* CapacityLeases.reserveCredit({
        keyId: key,
        replicaId: "a",
        want: 500_000,
        available: 500_000,
        ttlMs: 5_000
      })
      const settle = (spent: number, settledBefore: number, epoch = "e1") =>
        CapacityLeases.settleCredit(key, "a", spent, { settledBefore, epoch })
      const spent = Effect.map(CapacityLeases.inspectCredit(key), (s) => s.spent)
      yield* settle(10_000, 0)
      assert.strictEqual(yield* spent, 10_000)
      // Its reply lost: the replica still counts 0 acknowledged and sends it again with 20_000 more.
      yield* settle(30_000, 0)
      assert.strictEqual(yield* spent, 30_000)
      // And once more, the same: nothing new.
      yield* settle(30_000, 0)
      assert.strictEqual(yield* spent, 30_000)
      // Acknowledged at last: the next settle is plain spend.
      yield* settle(10_000, 30_000)
      assert.strictEqual(yield* spent, 40_000)
      // The replica restarted (a new epoch, counting from 0 again): its spend is spend.
      yield* settle(10_000, 0, "e2")
      assert.strictEqual(yield* spent, 50_000)
      // Without the acknowledged figure, a settle is counted as sent (each time).
      yield* CapacityLeases.settleCredit(key, "b", 10_000)
      yield* CapacityLeases.settleCredit(key, "b", 10_000)
      assert.strictEqual(yield* spent, 70_000)
    }).pipe(Effect.provide(RedisStore.layer({ url: server.url })))
  )

  it.scopedLive("one replica refreshes a key's credit at a time", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const [a, b] = yield* replicas(2)
      yield* run(
        a,
        CapacityLeases.reserveCredit({
          keyId: key,
          replicaId: "a",
          want: 100,
          available: 1_000,
          ttlMs: 5_000
        })
      )
      assert.isTrue(yield* run(a, CapacityLeases.tryRefreshLock(key, "a", 2_000)))
      assert.isFalse(yield* run(b, CapacityLeases.tryRefreshLock(key, "b", 2_000)))
      // Only the holder's figure is applied; it frees the lock.
      assert.isFalse(yield* run(b, CapacityLeases.refreshCredit(key, "b", 9_999)))
      assert.isTrue(yield* run(a, CapacityLeases.refreshCredit(key, "a", 500)))
      const s = yield* run(a, CapacityLeases.inspectCredit(key))
      assert.strictEqual(s.base, 500)
      assert.strictEqual(s.spent, 0)
      assert.isTrue(yield* run(b, CapacityLeases.tryRefreshLock(key, "b", 2_000)))
      assert.isFalse(yield* run(a, CapacityLeases.unlockRefresh(key, "a")))
      assert.isTrue(yield* run(b, CapacityLeases.unlockRefresh(key, "b")))
    })
  )

  it.scopedLive(
    "3 replicas reserving and spending concurrently never spend more than available (property)",
    () =>
      Effect.gen(function* () {
        const stores = yield* replicas(3)
        const ids = ["r1", "r2", "r3"]
        const op = fc.record({
          replica: fc.integer({ min: 0, max: 2 }),
          kind: fc.constantFrom("reserve", "spend", "release"),
          amount: fc.integer({ min: 0, max: 400 })
        })
        const prop = fc.asyncProperty(
          fc.integer({ min: 0, max: 1_000 }),
          fc.array(op, { minLength: 10, maxLength: 80 }),
          (available, ops) =>
            Effect.runPromise(
              Effect.gen(function* () {
                const key = freshKey()
                const slice = [0, 0, 0]
                let spent = 0
                let ok = true
                yield* Effect.forEach(
                  [0, 1, 2],
                  (i) =>
                    Effect.forEach(
                      ops.filter((o) => o.replica === i),
                      (o) =>
                        run(
                          stores[i]!,
                          Effect.gen(function* () {
                            if (o.kind === "reserve") {
                              const g = yield* CapacityLeases.reserveCredit({
                                keyId: key,
                                replicaId: ids[i]!,
                                want: o.amount,
                                available,
                                ttlMs: 10_000,
                                inUse: slice[i]!
                              })
                              slice[i] = g.granted
                            } else if (o.kind === "spend") {
                              // A replica spends only within its own slice, as a reservation would.
                              const cost = Math.min(o.amount, slice[i]!)
                              slice[i] = yield* CapacityLeases.settleCredit(key, ids[i]!, cost)
                              spent += cost
                            } else {
                              yield* CapacityLeases.releaseCredit(key, ids[i]!)
                              slice[i] = 0
                            }
                            const s = yield* CapacityLeases.inspectCredit(key)
                            const held = s.base === -1 ? s.totalGranted === 0 : s.base === available
                            if (!held || s.totalGranted + s.spent > Math.max(0, s.base)) ok = false
                          })
                        )
                    ),
                  { concurrency: "unbounded" }
                )
                return ok && spent <= available
              })
            )
        )
        yield* Effect.promise(() => fc.assert(prop, { numRuns: 25 }))
      }),
    60_000
  )
})
