/**
 * A half-open key's fleet-wide trial when Redis does not answer: unreachable (stopped), a replica
 * tests the key itself, as it would alone; a call that timed out (the probe may have been taken
 * by it, or by another replica whose call was answered) takes no trial, so a process whose event
 * loop lags past the command timeout does not let every replica test the key at once. On its own
 * server, since it pauses and stops it. An ejection whose write failed (not sent: the breaker was
 * open) is sent again while it lasts, so the other replicas still learn of it.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { FleetHealth, RedisStore } from "../src/index.js"
import { freshKeys, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())
const freshKey = freshKeys("trial")

const replica = (replicaId: string) =>
  Effect.flatMap(
    RedisStore.make({ url: server.url, breaker: { failures: 100, openForMs: 1_000 } }),
    (store) =>
      Effect.provideService(FleetHealth.make({ replicaId, pollEveryMs: 1_000 }), RedisStore.RedisStore, store)
  )

describe("fleet health when Redis does not answer", () => {
  it.scopedLive(
    "an ejection whose write was not sent (breaker open) is sent again: the other replica learns of it",
    () =>
      Effect.gen(function* () {
        // a's breaker opens at the first failure, for 200 ms.
        const a = yield* Effect.flatMap(
          RedisStore.make({ url: server.url, breaker: { failures: 1, openForMs: 200 } }),
          (store) => Effect.provideService(FleetHealth.make({ replicaId: "a" }), RedisStore.RedisStore, store)
        )
        const b = yield* replica("b")
        const key = freshKey()
        const seen: Array<number> = []
        b.register({ keys: () => [key], merge: (_, remainingMs) => void seen.push(remainingMs) })
        // Redis paused past the 100 ms command timeout: a write times out and opens a's breaker...
        yield* Effect.promise(() => server.admin().call("CLIENT", "PAUSE", "150", "ALL"))
        a.publish(freshKey(), 1_000, "Unauthorized", "ejected")
        yield* Effect.sleep(120)
        // ...so the ejection is not sent at first (fails fast); it is sent once the breaker lets a call through.
        a.publish(key, 3_000, "Unauthorized", "ejected")
        // b polls every second.
        yield* Effect.sleep(1_500)
        assert.isAbove(seen.length, 0)
        assert.isAtMost(seen[0]!, 3_000)
      })
  )

  it.scopedLive(
    "a timed-out probe call takes no trial; Redis unreachable, the replica tests the key itself",
    () =>
      Effect.gen(function* () {
        const [a, b] = yield* Effect.all([replica("a"), replica("b")])
        // Answered: one trial in the fleet.
        const key = freshKey()
        assert.deepStrictEqual(yield* Effect.all([a.tryTrial(key), b.tryTrial(key)]), [true, false])

        // Redis paused past the 100 ms command timeout: both calls time out; neither tests the key.
        const admin = server.admin()
        const paused = freshKey()
        yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "400", "ALL"))
        assert.deepStrictEqual(yield* Effect.all([a.tryTrial(paused), b.tryTrial(paused)]), [false, false])
        yield* Effect.sleep(500)

        // Redis stopped: each replica tests the key itself.
        server.stop()
        yield* Effect.addFinalizer(() => Effect.sync(() => server.start()))
        const down = freshKey()
        assert.deepStrictEqual(yield* Effect.all([a.tryTrial(down), b.tryTrial(down)]), [true, true])
      })
  )
})
