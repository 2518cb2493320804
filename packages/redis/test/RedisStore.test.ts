import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/TestClock"
import { CapacityLeases, LeaseKeeper, RedisStore, SharedHealth } from "../src/index.js"
import { freshKeys, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const freshKey = freshKeys("store")

const commandCalls = async (admin: ReturnType<typeof server.admin>, name: string) => {
  const info = await admin.info("commandstats")
  return Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
}

const acquire = (keyId: string) =>
  CapacityLeases.acquirePermits({ keyId, replicaId: "a", want: 1, cap: 5, ttlMs: 5_000 })

describe("RedisStore", () => {
  it.scopedLive("scripts run by EVALSHA and are reloaded after SCRIPT FLUSH (NOSCRIPT)", () =>
    Effect.gen(function* () {
      const admin = server.admin()
      const key = freshKey()
      yield* acquire(key)
      const before = yield* Effect.promise(() => commandCalls(admin, "evalsha"))
      for (let i = 0; i < 5; i++) yield* acquire(key)
      assert.strictEqual((yield* Effect.promise(() => commandCalls(admin, "evalsha"))) - before, 5)
      yield* Effect.promise(() => admin.script("FLUSH"))
      // The next call meets NOSCRIPT, resends the body, and later calls are EVALSHA again.
      assert.strictEqual((yield* acquire(key)).granted, 1)
      assert.strictEqual((yield* acquire(key)).granted, 1)
      const health = yield* SharedHealth.readHealth([key])
      assert.strictEqual(health[0]!.cooldownMs, 0)
    }).pipe(Effect.provide(RedisStore.layer({ url: server.url })))
  )

  it.effect("a password in the URL is refused at start-up, naming the field", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Layer.build(RedisStore.layer({ url: "redis://:hunter2@127.0.0.1:1/0" })).pipe(Effect.scoped)
      )
      assert.isTrue(Exit.isFailure(exit))
      const text = String(Exit.isFailure(exit) ? exit.cause : "")
      assert.include(text, "url")
      assert.notInclude(text, "hunter2")
    })
  )

  it.scopedLive("a password comes from the environment variable named in the config", () =>
    Effect.gen(function* () {
      const admin = server.admin()
      yield* Effect.promise(() => admin.config("SET", "requirepass", "s3cret-pw"))
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => admin.auth("s3cret-pw").then(() => admin.config("SET", "requirepass", "")))
      )
      const ok = yield* RedisStore.make({ url: server.url, passwordEnv: "OR_TEST_REDIS_PASSWORD" }).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OR_TEST_REDIS_PASSWORD", "s3cret-pw"]])))
      )
      const key = freshKey()
      const g = yield* Effect.provideService(acquire(key), RedisStore.RedisStore, ok)
      assert.strictEqual(g.granted, 1)
      // Without it, calls fail as unavailable, and nothing they say holds the password.
      const none = yield* RedisStore.make({ url: server.url })
      const err = yield* Effect.flip(Effect.provideService(acquire(key), RedisStore.RedisStore, none))
      assert.strictEqual(err._tag, "RedisUnavailable")
      assert.notInclude(JSON.stringify(err), "s3cret-pw")
    })
  )

  it.scopedLive("layerConfig reads the url and the password's variable name from config", () =>
    Effect.gen(function* () {
      const layer = RedisStore.layerConfig({
        url: Config.string("REDIS_URL"),
        passwordEnv: Config.option(Config.string("REDIS_PASSWORD_ENV")).pipe(
          Config.map((o) => (o._tag === "Some" ? o.value : undefined))
        )
      })
      const g = yield* acquire(freshKey()).pipe(
        Effect.provide(layer),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["REDIS_URL", server.url]])))
      )
      assert.strictEqual(g.granted, 1)
    })
  )

  it.scoped("the breaker opens after 3 failures, fails fast, then lets one trial through (TestClock)", () =>
    Effect.gen(function* () {
      // Nothing listens on port 1: every call fails at once as Disconnected.
      const store = yield* RedisStore.make({
        url: "redis://127.0.0.1:1/0",
        breaker: { failures: 3, openForMs: 1_000 }
      })
      const call = Effect.flip(Effect.provideService(acquire("k"), RedisStore.RedisStore, store))
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* call).reason, "Disconnected")
      assert.strictEqual(yield* store.breaker, "open")
      assert.strictEqual((yield* call).reason, "CircuitOpen")
      yield* TestClock.adjust(999)
      assert.strictEqual((yield* call).reason, "CircuitOpen")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* store.breaker, "half-open")
      // The trial is sent (and fails): open again for another period.
      assert.strictEqual((yield* call).reason, "Disconnected")
      assert.strictEqual(yield* store.breaker, "open")
      assert.strictEqual((yield* call).reason, "CircuitOpen")
    })
  )

  it.scopedLive("a slow Redis fails calls with Timeout after ~100 ms", () =>
    Effect.gen(function* () {
      const admin = server.admin()
      const key = freshKey()
      yield* acquire(key)
      yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "400", "ALL"))
      const start = performance.now()
      const err = yield* Effect.flip(acquire(key))
      const took = performance.now() - start
      assert.strictEqual(err.reason, "Timeout")
      assert.isBelow(took, 300)
      assert.isAtLeast(took, 90)
      yield* Effect.promise(() => admin.call("CLIENT", "UNPAUSE"))
    }).pipe(Effect.provide(RedisStore.layer({ url: server.url, breaker: { failures: 100 } })))
  )
})

// Stops and restarts the server: last, on its own server so the other tests do not see it.
describe("Redis down and back", () => {
  const down = startRedis()
  afterAll(() => down.close())

  it.scopedLive("calls fail fast, the breaker opens, and the client recovers after an empty restart", () =>
    Effect.gen(function* () {
      const store = yield* RedisStore.make({ url: down.url, breaker: { failures: 3, openForMs: 300 } })
      const keeper = yield* LeaseKeeper.make({ replicaId: "k", replicas: 3, ttlMs: 1_500 })
      const key = freshKey()
      const call = Effect.provideService(acquire(key), RedisStore.RedisStore, store)
      assert.strictEqual((yield* call).granted, 1)
      // Replica a (`call`) holds 1 of the 9.
      assert.strictEqual((yield* keeper.renewPermits(key, { want: 9, cap: 9 })).source, "redis")
      assert.strictEqual(keeper.unsafePermits(key, 9), 8)

      const renewedAt = performance.now()
      down.stop()
      const errors: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const start = performance.now()
        const err = yield* Effect.flip(call)
        assert.isBelow(performance.now() - start, 150)
        errors.push(err.reason)
      }
      assert.isTrue(errors.every((r) => r === "Disconnected" || r === "Timeout"))
      assert.strictEqual(yield* store.breaker, "open")
      assert.strictEqual((yield* Effect.flip(call)).reason, "CircuitOpen")

      // The keeper keeps what it holds until it expires, then runs on cap ÷ replicas.
      const held = yield* keeper.renewPermits(key, { want: 9, cap: 9 })
      assert.strictEqual(held.source, "held")
      assert.strictEqual(held.amount, 8)
      assert.isTrue(keeper.unsafeDegraded())
      assert.strictEqual((yield* Metric.value(LeaseKeeper.degradedGauge)).value, 1)
      yield* Effect.sleep(Math.max(0, renewedAt + 1_550 - performance.now()))
      const local = yield* keeper.renewPermits(key, { want: 9, cap: 9 })
      assert.deepStrictEqual([local.source, local.amount], ["local", 3])
      assert.strictEqual(keeper.unsafePermits(key, 9), 3)

      // Redis comes back empty. Past the open period one trial goes through and closes the breaker.
      down.start()
      yield* Effect.sleep(700)
      let recovered = false
      for (let i = 0; i < 20 && !recovered; i++) {
        recovered = Exit.isSuccess(yield* Effect.exit(call))
        if (!recovered) yield* Effect.sleep(100)
      }
      assert.isTrue(recovered)
      assert.strictEqual(yield* store.breaker, "closed")
      const back = yield* keeper.renewPermits(key, { want: 9, cap: 9 })
      assert.strictEqual(back.source, "redis")
      assert.isFalse(yield* keeper.degraded)
      assert.strictEqual((yield* Metric.value(LeaseKeeper.degradedGauge)).value, 0)
      assert.strictEqual(back.amount, 8)
      // The credit ledger is rebuilt from the figure a replica looked up (`GET /key`).
      const credit = yield* keeper.renewCredit(key, { want: 900, available: 600 })
      assert.deepStrictEqual([credit.source, credit.amount], ["redis", 600])
      const ledger = yield* Effect.provideService(
        CapacityLeases.inspectCredit(key),
        RedisStore.RedisStore,
        store
      )
      assert.strictEqual(ledger.base, 600)
    }).pipe(Effect.provide(RedisStore.layer({ url: down.url, breaker: { failures: 3, openForMs: 300 } })))
  )

  it.scopedLive("a replica started before Redis connects once it is up", () =>
    Effect.gen(function* () {
      down.stop()
      const store = yield* RedisStore.make({ url: down.url, breaker: { failures: 1_000 } })
      const call = Effect.exit(Effect.provideService(acquire(freshKey()), RedisStore.RedisStore, store))
      assert.isTrue(Exit.isFailure(yield* call))
      down.start()
      let ok = false
      for (let i = 0; i < 30 && !ok; i++) {
        ok = Exit.isSuccess(yield* call)
        if (!ok) yield* Effect.sleep(100)
      }
      assert.isTrue(ok)
    })
  )
})
