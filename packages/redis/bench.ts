/**
 * Micro-benchmark of the shared-state scripts against a real redis-server on loopback:
 * `npx tsx packages/redis/bench.ts [calls]`.
 *
 * 1. The round trip of each script through `RedisStore` (breaker and Effect included), one call
 *    at a time: p50 / p99 over `calls` calls (default 3,000).
 * 2. How often a replica must call Redis per request: permits are renewed on a timer (so the rate
 *    is renewals per second ÷ requests per second), credit when the slice runs out (so it falls
 *    with the lease size). Credit is measured by serving requests against Redis; permits follow
 *    from the renewal period.
 */
import { execFileSync } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import { CapacityLeases, RedisStore, SharedHealth } from "./src/index.js"

const calls = Number(process.argv[2] ?? 3_000)
const script = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../../scripts/redis.sh")
const [port, pid] = execFileSync(script, ["start"], { encoding: "utf8" }).trim().split(" ")

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const time = <A, E, R>(name: string, f: (i: number) => Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) yield* Effect.either(f(i)) // warm-up
    const samples: Array<number> = []
    let failed = 0
    for (let i = 0; i < calls; i++) {
      const start = performance.now()
      // A loaded machine can push a call past the 100 ms timeout: counted, not fatal.
      if ((yield* Effect.either(f(i)))._tag === "Left") failed++
      samples.push((performance.now() - start) * 1_000)
    }
    samples.sort((a, b) => a - b)
    return { name, p50: percentile(samples, 50), p99: percentile(samples, 99), failed }
  })

const roundTrips = Effect.gen(function* () {
  const redis = yield* RedisStore.RedisStore
  const rows = [
    yield* time("PING (plain command, for scale)", () => redis.command("PING", [])),
    yield* time("acquirePermits (renew)", (i) =>
      CapacityLeases.acquirePermits({ keyId: `k${i % 3}`, replicaId: "r1", want: 8, cap: 10, ttlMs: 3_000 })
    ),
    yield* time("releasePermits", (i) => CapacityLeases.releasePermits(`k${i % 3}`, "r1")),
    yield* time("reserveCredit", (i) =>
      CapacityLeases.reserveCredit({
        keyId: `k${i % 3}`,
        replicaId: "r1",
        want: 50_000,
        available: 1e12,
        ttlMs: 3_000
      })
    ),
    yield* time("settleCredit", (i) => CapacityLeases.settleCredit(`k${i % 3}`, "r1", 10)),
    yield* time("extendCooldown", (i) => SharedHealth.extendCooldown(`k${i % 3}`, 1_000, "rate-limited")),
    yield* time("readHealth (3 keys, pipelined)", () => SharedHealth.readHealth(["k0", "k1", "k2"])),
    yield* time("tryProbe", (i) => SharedHealth.tryProbe(`k${i % 3}`, "r1", 1))
  ]
  console.log(`\nRound trip per call, µs (${calls} calls each, one at a time, loopback):`)
  console.log("| script | p50 | p99 | failed |\n|---|---|---|---|")
  for (const r of rows) console.log(`| ${r.name} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.failed} |`)
})

// A replica serving requests of a fixed cost from its credit slice: it calls Redis only when the
// slice cannot cover the next request (settling what it spent and reserving a new slice).
const creditCalls = (leaseInRequests: number, requests: number) =>
  Effect.gen(function* () {
    const cost = 1_000 // micro-dollars per request
    const keyId = `credit-${leaseInRequests}`
    let slice = 0
    let spentSinceSettle = 0
    let redisCalls = 0
    for (let i = 0; i < requests; i++) {
      while (slice < cost) {
        if (spentSinceSettle > 0) {
          yield* CapacityLeases.settleCredit(keyId, "r1", spentSinceSettle)
          redisCalls++
          spentSinceSettle = 0
        }
        const g = yield* CapacityLeases.reserveCredit({
          keyId,
          replicaId: "r1",
          want: leaseInRequests * cost,
          available: 1e12,
          ttlMs: 10_000
        })
        redisCalls++
        slice = g.granted
      }
      slice -= cost
      spentSinceSettle += cost
    }
    return redisCalls / requests
  })

const perRequest = Effect.gen(function* () {
  console.log("\nRedis calls per request, credit (slice refilled when it cannot cover a request):")
  console.log("| lease size (requests' worth) | calls / request |\n|---|---|")
  for (const lease of [1, 10, 100, 1_000]) {
    const r = yield* creditCalls(lease, 20_000)
    console.log(`| ${lease} | ${r.toFixed(4)} |`)
  }
  console.log(
    "\nRedis calls per request, permits (computed: one renewal per key every TTL/3, whatever the traffic):"
  )
  console.log("| keys | TTL | requests/s per replica | calls / request |\n|---|---|---|---|")
  for (const [keys, ttl, rps] of [
    [3, 3_000, 100],
    [3, 3_000, 1_000],
    [10, 3_000, 1_000],
    [3, 9_000, 1_000]
  ] as const) {
    const renewalsPerSecond = keys / (ttl / 3 / 1_000)
    console.log(`| ${keys} | ${ttl / 1_000} s | ${rps} | ${(renewalsPerSecond / rps).toFixed(4)} |`)
  }
})

Effect.runPromise(
  Effect.zipRight(roundTrips, perRequest).pipe(
    Effect.provide(RedisStore.layer({ url: `redis://127.0.0.1:${port}/0` })),
    Effect.ensuring(Effect.sync(() => execFileSync(script, ["stop", pid!])))
  )
).catch((e) => {
  console.error(e)
  process.exitCode = 1
})
