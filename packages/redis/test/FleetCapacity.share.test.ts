/**
 * A replica short of its share of a key's permits gets it while the others stay saturated: a busy
 * replica whose slice is over its water-filling target does not hand a freed permit to its own
 * queue, so its slice drains to the target and the rest moves to the replica that is short. (A
 * renewal never takes back a permit in use; without the drain, a replica with a queue kept every
 * permit it held for as long as its queue lasted, and the other's requests waited until their
 * deadline.) And a renewal whose call timed out may still have been applied: the replica keeps no
 * more than the in-use it sent, since Redis may have handed the rest to another replica.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as ConcurrencyLimited from "@or-balancer/strategies/ConcurrencyLimited"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Fleet, LeaseKeeper, RedisStore } from "../src/index.js"
import { startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const replica = (i: number, key: Key.Key) =>
  Effect.gen(function* () {
    const base = Layer.mergeAll(KeyPool.layer([key]).pipe(Layer.orDie), StateStore.layerMemory)
    const fleet = Fleet.layer({ url: server.url, replicaId: `r${i}`, replicas: 2, renewEveryMs: 20 }).pipe(
      Layer.orDie
    )
    const selector = ConcurrencyLimited.layer().pipe(Layer.provide(RoundRobin.layer({ name: `r${i}` })))
    const ctx = yield* Layer.build(selector.pipe(Layer.provideMerge(Layer.merge(base, fleet))))
    return Context.get(ctx, KeySelector.KeySelector)
  })

// A keeper of its own (its own connection and breaker), as one replica holds it.
const keeper = (replicaId: string) =>
  Effect.flatMap(RedisStore.make({ url: server.url }), (store) =>
    Effect.provideService(
      LeaseKeeper.make({ replicaId, replicas: 2, ttlMs: 3_000 }),
      RedisStore.RedisStore,
      store
    )
  )

describe("permit shares between saturated replicas", () => {
  it.scopedLive("a replica that joins a saturated fleet gets its share while the other stays busy", () =>
    Effect.gen(function* () {
      const cap = 4
      const key = Key.make({
        id: `share-${Math.floor(performance.now())}`,
        secret: Redacted.make("sk-or-v1-test-share-000000000000"),
        maxConcurrency: cap
      })
      const [a, b] = yield* Effect.all([replica(0, key), replica(1, key)])
      const inUse = [0, 0]
      const most = [0, 0]
      let fleetMost = 0
      const served = [0, 0]
      const refused: Array<string> = []
      let stop = false
      // One caller's loop: select (waiting up to 3 s for a permit), hold it 10 ms, report.
      const caller = (i: number, selector: KeySelector.Service) =>
        Effect.whileLoop({
          while: () => !stop,
          body: () =>
            selector.select({ attempt: 1, tried: new Set(), deadline: Date.now() + 3_000 }).pipe(
              Effect.flatMap((lease) =>
                Effect.gen(function* () {
                  inUse[i]!++
                  most[i] = Math.max(most[i]!, inUse[i]!)
                  fleetMost = Math.max(fleetMost, inUse[0]! + inUse[1]!)
                  yield* Effect.sleep(10)
                  inUse[i]!--
                  served[i]!++
                  yield* KeySelector.report(lease, KeySelector.success(10))
                })
              ),
              Effect.catchAll((e) => Effect.sync(() => void refused.push(`r${i}: ${e.message}`)))
            ),
          step: () => {}
        })
      const callers = (i: number, selector: KeySelector.Service, n: number) =>
        Effect.forEach(Array.from({ length: n }), () => caller(i, selector), {
          concurrency: "unbounded",
          discard: true
        })
      // Replica a alone, with twice the cap in callers: it holds the whole cap and keeps a queue.
      const busy = yield* Effect.fork(callers(0, a, 2 * cap))
      yield* Effect.sleep(500)
      assert.strictEqual(most[0], cap)
      // Replica b joins with as many callers; a stays saturated throughout.
      const joined = yield* Effect.fork(callers(1, b, 2 * cap))
      yield* Effect.sleep(1_500)
      const bServed = served[1]!
      const bMost = most[1]!
      stop = true
      yield* Effect.all([busy, joined].map((f) => f.await))
      console.log(
        `a served ${served[0]}, b served ${bServed} (max ${bMost} in use) while a stayed busy; refused: ${refused.length}`
      )
      assert.deepStrictEqual(refused, [])
      assert.isAtMost(fleetMost, cap)
      // b reaches its even share (cap ÷ 2) while a keeps a queue.
      assert.strictEqual(bMost, cap / 2)
      assert.isAbove(bServed, 20)
    })
  )

  it.scopedLive("a shrinking renewal that timed out: the replica keeps only the in-use it sent", () =>
    Effect.gen(function* () {
      const key = `timedout-${Math.floor(performance.now())}`
      const [a, b] = yield* Effect.all([keeper("a"), keeper("b")])
      assert.strictEqual((yield* a.renewPermits(key, { want: 4, cap: 4, inUse: 0 })).amount, 4)
      // Redis paused past the 100 ms command timeout: a's renewal down to the 1 permit it uses
      // times out here, but Redis applies it when the pause ends.
      yield* Effect.promise(() => server.admin().call("CLIENT", "PAUSE", "300", "ALL"))
      yield* a.renewPermits(key, { want: 1, cap: 4, inUse: 1 })
      yield* Effect.sleep(400)
      // b is granted the rest; a, still within its old slice's life, may use only what it sent.
      const granted = (yield* b.renewPermits(key, { want: 4, cap: 4, inUse: 0 })).amount
      assert.strictEqual(granted, 3)
      assert.isAtMost(a.unsafePermits(key, 4) + b.unsafePermits(key, 4), 4)
    })
  )

  it.scopedLive(
    "a cold replica whose first renewal times out takes no local share until Redis is unreachable",
    () =>
      Effect.gen(function* () {
        const key = `cold-${Math.floor(performance.now())}`
        const [a, b] = yield* Effect.all([keeper("a"), keeper("b")])
        // b holds the whole cap; a, new, is refused an answer in time (Redis paused past the timeout).
        assert.strictEqual((yield* b.renewPermits(key, { want: 4, cap: 4, inUse: 0 })).amount, 4)
        yield* Effect.promise(() => server.admin().call("CLIENT", "PAUSE", "400", "ALL"))
        const first = yield* a.renewPermits(key, { want: 4, cap: 4, inUse: 0 })
        // Slow is not unreachable: a local share now would be a fifth permit beside b's four.
        assert.strictEqual(first.amount, 0)
        assert.strictEqual(a.unsafePermits(key, 4), 0)
        assert.isTrue(yield* a.degraded)
        assert.isAtMost(a.unsafePermits(key, 4) + b.unsafePermits(key, 4), 4)
        // Timeouts in a row open the breaker: Redis counts as unreachable, and a runs on its share.
        let amount = 0
        for (let i = 0; i < 5 && amount === 0; i++)
          amount = (yield* a.renewPermits(key, { want: 4, cap: 4, inUse: 0 })).amount
        assert.strictEqual(amount, 2)
        assert.strictEqual(a.unsafePermits(key, 4), 2)
      })
  )
})
