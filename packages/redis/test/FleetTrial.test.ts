/**
 * A half-open key's fleet-wide trial when Redis does not answer: unreachable (stopped), a replica
 * tests the key itself, as it would alone; a call that timed out (the probe may have been taken
 * by it, or by another replica whose call was answered) takes no trial, so a process whose event
 * loop lags past the command timeout does not let every replica test the key at once. On its own
 * server, since it pauses and stops it.
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

describe("a fleet trial when Redis does not answer", () => {
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
