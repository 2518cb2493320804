/**
 * A rate window learned while this replica's Redis calls fail (a burst of command timeouts on a
 * loaded machine opens the breaker) is written again until a write goes through: dropped, the
 * other replicas would never learn it. On its own server, since it pauses it.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import type * as PacingShare from "@or-balancer/strategies/PacingShare"
import * as Effect from "effect/Effect"
import { FleetPacing, RedisStore } from "../src/index.js"
import { startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

describe("pacing windows when Redis does not answer", () => {
  it.scopedLive("a window learned while the breaker is open is sent once it lets a call through", () =>
    Effect.gen(function* () {
      // a's breaker opens at the first failure, for 200 ms.
      const a = yield* Effect.flatMap(
        RedisStore.make({ url: server.url, breaker: { failures: 1, openForMs: 200 } }),
        (store) => Effect.provideService(FleetPacing.make({ replicaId: "a" }), RedisStore.RedisStore, store)
      )
      const b = yield* Effect.flatMap(RedisStore.make({ url: server.url }), (store) =>
        Effect.provideService(FleetPacing.make({ replicaId: "b" }), RedisStore.RedisStore, store)
      )
      const seen = new Map<string, PacingShare.Learned>()
      b.register({ adopt: (id, learned) => void seen.set(id, learned) })
      // Redis paused past the 100 ms command timeout: a write times out and opens a's breaker...
      yield* Effect.promise(() => server.admin().call("CLIENT", "PAUSE", "150", "ALL"))
      a.publish("account:other", { limit: 3, windowMs: 1_000, closedMs: 0 })
      yield* Effect.sleep(120)
      // ...so this window is not sent at first (fails fast); it is sent once the breaker lets a call through.
      a.publish("account:acme", { limit: 6, windowMs: 1_000, closedMs: 0 })
      // a's breaker lets a call through after 200 ms; both poll every 50 ms (a loaded machine may be slower).
      for (let i = 0; i < 60 && !seen.has("account:acme"); i++) yield* Effect.sleep(50)
      assert.strictEqual(seen.get("account:acme")?.limit, 6)
      assert.strictEqual(seen.get("account:acme")?.windowMs, 1_000)
    })
  )
})
