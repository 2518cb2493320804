import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { RedisStore, SharedHealth } from "../src/index.js"
import { asReplica, freshKeys, replicasOn, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const replicas = (n: number) => replicasOn(server, n)
const run = asReplica

const freshKey = freshKeys("health")

describe("shared health", () => {
  it.scopedLive("a cooldown is never shortened by another replica's write", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const [a, b] = yield* replicas(2)
      const first = yield* run(a, SharedHealth.extendCooldown(key, 5_000, "rate-limited"))
      assert.isTrue(first.extended)
      const shorter = yield* run(b, SharedHealth.extendCooldown(key, 100, "server-error"))
      assert.isFalse(shorter.extended)
      assert.isAbove(shorter.remainingMs, 4_500)
      const [seen] = yield* run(b, SharedHealth.readHealth([key]))
      assert.isAbove(seen!.cooldownMs, 4_500)
      assert.strictEqual(seen!.cooldownReason, "rate-limited")
      const longer = yield* run(b, SharedHealth.extendCooldown(key, 9_000, "account-rate-limited"))
      assert.isTrue(longer.extended)
      assert.isAbove(longer.remainingMs, 8_500)
    })
  )

  it.scopedLive("concurrent writes from 3 replicas leave the longest cooldown", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const stores = yield* replicas(3)
      const durations = [3_000, 800, 20_000, 50, 7_000, 12_000, 400, 19_000, 1_000]
      yield* Effect.forEach(
        durations,
        (ms, i) => run(stores[i % 3]!, SharedHealth.extendCooldown(key, ms, `r${i % 3}`)),
        { concurrency: "unbounded" }
      )
      const [h] = yield* run(stores[0]!, SharedHealth.readHealth([key]))
      assert.isAbove(h!.cooldownMs, 19_000)
      assert.strictEqual(h!.cooldownReason, "r2")
    })
  )

  it.scopedLive("cooldowns end by Redis's clock; other keys are untouched", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const other = freshKey()
      yield* SharedHealth.extendCooldown(key, 150, "rate-limited")
      const [during, untouched] = yield* SharedHealth.readHealth([key, other])
      assert.isAbove(during!.cooldownMs, 0)
      assert.deepStrictEqual(untouched, {
        keyId: other,
        cooldownMs: 0,
        cooldownReason: undefined,
        ejectedMs: 0,
        ejectedReason: undefined
      })
      yield* Effect.sleep(200)
      const [after] = yield* SharedHealth.readHealth([key])
      assert.strictEqual(after!.cooldownMs, 0)
      assert.strictEqual(after!.cooldownReason, undefined)
    }).pipe(Effect.provide(RedisStore.layer({ url: server.url })))
  )

  it.scopedLive("one half-open probe per key across the fleet; only its success readmits", () =>
    Effect.gen(function* () {
      const key = freshKey()
      const stores = yield* replicas(3)
      yield* run(stores[0]!, SharedHealth.eject(key, 60_000, "unauthorized"))
      // A shorter ejection from another replica does not end it sooner.
      assert.isFalse((yield* run(stores[1]!, SharedHealth.eject(key, 10, "server-error"))).extended)
      const got = yield* Effect.forEach(
        stores,
        (s, i) => run(s, SharedHealth.tryProbe(key, `r${i}`, 5_000)),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(got.filter(Boolean).length, 1)
      const holder = got.indexOf(true)
      const other = (holder + 1) % 3
      // A replica that does not hold the probe cannot readmit the key.
      assert.isFalse(yield* run(stores[other]!, SharedHealth.endProbe(key, `r${other}`, true)))
      assert.isAbove((yield* run(stores[other]!, SharedHealth.readHealth([key])))[0]!.ejectedMs, 0)
      assert.isTrue(yield* run(stores[holder]!, SharedHealth.endProbe(key, `r${holder}`, true)))
      const [h] = yield* run(stores[other]!, SharedHealth.readHealth([key]))
      assert.strictEqual(h!.ejectedMs, 0)
      // The probe is free again.
      assert.isTrue(yield* run(stores[other]!, SharedHealth.tryProbe(key, `r${other}`, 5_000)))
    })
  )

  it.scopedLive("a probe whose replica died lapses after its TTL", () =>
    Effect.gen(function* () {
      const key = freshKey()
      assert.isTrue(yield* SharedHealth.tryProbe(key, "dead", 100))
      assert.isFalse(yield* SharedHealth.tryProbe(key, "alive", 5_000))
      yield* Effect.sleep(150)
      assert.isTrue(yield* SharedHealth.tryProbe(key, "alive", 5_000))
    }).pipe(Effect.provide(RedisStore.layer({ url: server.url })))
  )
})
