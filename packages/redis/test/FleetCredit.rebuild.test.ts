/**
 * A replica's credit slice while Redis is back empty and the fleet's ledger is rebuilt by a slow
 * `GET /key`: a selection no slice covers waits for the grant (up to its deadline) rather than
 * being refused after the usual short wait; credit all held by another replica is still refused
 * after that short wait. On its own server, since it flushes it.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { FleetCredit, RedisStore } from "../src/index.js"
import { freshKeys, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())
const freshKey = freshKeys("rebuild")

const UNIT = 1_000_000 // $0.001 in nano-dollars
// Two units of credit: the first grant takes it all, so no spare is left to spend while cut off.
const info: CreditLookup.KeyInfo = {
  label: undefined,
  limit: 1,
  limitRemaining: 0.002,
  limitReset: null,
  usage: 0,
  isFreeTier: false
}

const replica = (replicaId: string) =>
  Effect.flatMap(RedisStore.make({ url: server.url }), (store) =>
    Effect.provideService(
      FleetCredit.make({ replicaId, replicas: 1, ttlMs: 400, renewEveryMs: 20 }),
      RedisStore.RedisStore,
      store
    )
  )

const keyOf = (id: string) => Key.make({ id, secret: Redacted.make(`sk-or-v1-test-${id}-000000000000`) })

describe("fleet credit while the ledger is rebuilt", () => {
  it.scopedLive("Redis back empty: a selection waits past 1 s for the rebuilt ledger's grant", () =>
    Effect.gen(function* () {
      const key = keyOf(freshKey())
      const a = yield* replica("a")
      // The first GET /key answers at once; the one rebuilding the emptied ledger takes 2.5 s.
      let lookups = 0
      const run = Effect.suspend(() => {
        lookups++
        return lookups === 1 ? Effect.succeed(info) : Effect.as(Effect.sleep(2_500), info)
      })
      yield* a.lookup(key, run)
      yield* a.grow([key.id], UNIT, Date.now() + 5_000)
      assert.isTrue(a.covers(key.id, UNIT))
      // A request runs on it throughout: the slice is not given back idle before the flush (on a
      // loaded machine that can come first, and the credit it frees would be spent while cut off).
      a.take(key.id, UNIT)

      yield* Effect.promise(() => server.admin().flushall())
      // The slice lapses; Redis has no ledger, and the lookup that rebuilds it is under way.
      yield* Effect.sleep(600)
      assert.isFalse(a.covers(key.id, UNIT))
      const start = Date.now()
      yield* a.grow([key.id], UNIT, start + 6_000)
      const waited = Date.now() - start
      assert.isTrue(a.covers(key.id, UNIT), `not covered after ${waited} ms`)
      assert.isAbove(waited, 1_000)
      assert.strictEqual(lookups, 2)
    })
  )

  it.scopedLive("credit all held by another replica: refused after the short wait, not the deadline", () =>
    Effect.gen(function* () {
      const key = keyOf(freshKey())
      const [a, b] = yield* Effect.all([replica("a"), replica("b")])
      yield* a.lookup(key, Effect.succeed(info))
      yield* b.lookup(key, Effect.succeed(info))
      // b holds the whole ledger in two running reservations.
      yield* b.grow([key.id], UNIT, Date.now() + 5_000)
      b.take(key.id, UNIT)
      b.take(key.id, UNIT)
      assert.isFalse(b.covers(key.id, UNIT))
      const start = Date.now()
      yield* a.grow([key.id], UNIT, start + 8_000)
      const waited = Date.now() - start
      assert.isFalse(a.covers(key.id, UNIT))
      assert.isAtLeast(waited, 1_000)
      assert.isBelow(waited, 3_000)
    })
  )
})
