/**
 * Three gateway replicas (in-process `Gateway.make` ×3) on one real redis-server (started by the
 * project's scripts/redis.sh on a free port, stopped by PID) in front of one simulator: the
 * per-key caps and key health hold over the fleet, measured at the upstream (the simulator).
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, envOf, fileFor, post, simKeys } from "./GatewaySupport.js"

const SCRIPT = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../../../scripts/redis.sh")
const [port, pid] = execFileSync(SCRIPT, ["start"], { encoding: "utf8" }).trim().split(" ")
const REDIS = `redis://127.0.0.1:${port}/0`
afterAll(() => {
  execFileSync(SCRIPT, ["stop", pid!])
})

/**
 * Milliseconds this thread and redis-server have spent runnable but waiting for a CPU (Linux's
 * schedstat; 0 where it is missing, so the bound is then plain wall-clock time).
 */
const runqueueWaitMs = () =>
  ["thread-self", pid!].reduce((sum, task) => {
    try {
      return sum + Number(readFileSync(`/proc/${task}/schedstat`, "utf8").split(" ")[1]) / 1e6
    } catch {
      return sum
    }
  }, 0)

const LABELS = ["k1", "k2", "k3"]
const statusOf = (url: string) =>
  Effect.promise(() => fetch(`${url}/status`).then((r) => r.json() as Promise<Gateway.Status>))
let fleetNo = 0

/** One simulator and three gateways on it; `redis: false` gives three independent gateways. */
const fleet = (
  strategy: ReadonlyArray<unknown>,
  options: {
    readonly redis: boolean
    readonly latencyMs: number
    readonly keys?: ReadonlyArray<unknown>
    readonly sim?: Partial<Simulator.Config>
  }
) =>
  Effect.gen(function* () {
    const sim = yield* Simulator.make({
      seed: 7,
      keys: simKeys(LABELS),
      latency: { kind: "fixed", ms: options.latencyMs },
      ...options.sim
    })
    // A database of its own per fleet: no state carried over between tests.
    const db = ++fleetNo
    const gateways = yield* Effect.forEach([0, 1, 2], (i) =>
      Effect.flatMap(
        configFor(sim, {
          strategy,
          ...(options.keys === undefined ? {} : { keys: options.keys }),
          deadlines: { keyWaitMs: 10_000, drainMs: 2000 },
          ...(options.redis
            ? { redis: { url: `${REDIS.slice(0, -2)}/${db}`, replicaId: `r${i}`, replicas: 3 } }
            : {})
        }),
        Gateway.make
      )
    )
    return { sim, gateways }
  })

const burst = (urls: ReadonlyArray<string>, perReplica: number, body = chatBody()) =>
  Effect.forEach(
    urls.flatMap((url) => Array.from({ length: perReplica }, () => url)),
    (url) => post(`${url}/v1/chat/completions`, body),
    { concurrency: "unbounded" }
  )

// One key capped at $0.50 and a model at $0.01 a request: exactly 50 requests' worth.
const PENNY = "sim/penny"
const capped = {
  keys: [{ ...simKeys(["k1"])[0]!, limit: 0.5 }],
  models: [{ id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }]
}
const oneKey = [{ id: "k1", secretEnv: "KEY_K1", account: "acme" }]

describe("Gateway fleet on Redis", () => {
  it.scoped(
    "the redis section: defaults, the password read from its variable, a bad URL or variable named",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(LABELS) })
        const env = envOf(sim)
        env.set("REDIS_PW", "s3cret-redis-pw")
        const decode = (redis: unknown) =>
          GatewayConfig.decode(fileFor(sim, { redis })).pipe(
            Effect.withConfigProvider(ConfigProvider.fromMap(env))
          )
        assert.strictEqual(
          (yield* GatewayConfig.decode(fileFor(sim)).pipe(
            Effect.withConfigProvider(ConfigProvider.fromMap(env))
          )).redis,
          undefined
        )
        const c = (yield* decode({ url: "redis://127.0.0.1:6379/0", passwordEnv: "REDIS_PW" })).redis!
        assert.strictEqual(Redacted.value(c.password!), "s3cret-redis-pw")
        assert.deepStrictEqual(
          [c.url, c.replicaId, c.replicas, c.leaseTtlMs],
          ["redis://127.0.0.1:6379/0", undefined, 1, 3000]
        )
        const badUrl = yield* Effect.flip(decode({ url: "redis://user:pw@127.0.0.1:6379/0" }))
        assert.match(badUrl.message, /redis\.url/)
        assert.notInclude(badUrl.message, "pw@")
        const noVar = yield* Effect.flip(
          decode({ url: "redis://127.0.0.1:6379/0", passwordEnv: "NOT_SET_PW" })
        )
        assert.match(noVar.message, /redis\.passwordEnv: environment variable NOT_SET_PW is not set/)
      })
  )

  it.scopedLive("a key's concurrency cap holds summed over 3 replicas (max in flight at the upstream)", () =>
    Effect.gen(function* () {
      const strategy = [{ name: "concurrency-limited", defaultMax: 4 }, { name: "round-robin" }]
      // Control: three gateways without Redis each enforce the whole cap, so the upstream sees more.
      const alone = yield* fleet(strategy, { redis: false, latencyMs: 150 })
      yield* burst(
        alone.gateways.map((g) => g.url),
        30
      )
      const aloneStats = yield* alone.sim.stats
      const aloneMax = Math.max(...LABELS.map((l) => aloneStats.keys[l]!.maxInFlight))
      assert.isAbove(aloneMax, 4)

      const { sim, gateways } = yield* fleet(strategy, { redis: true, latencyMs: 150 })
      const answers = yield* burst(
        gateways.map((g) => g.url),
        30
      )
      assert.deepStrictEqual(
        answers.map((a) => a.status),
        answers.map(() => 200)
      )
      const stats = yield* sim.stats
      const max = LABELS.map((l) => stats.keys[l]!.maxInFlight)
      for (const m of max) assert.isAtMost(m, 4)
      assert.strictEqual(stats.requests, 90)
      const metrics = yield* Effect.promise(() => fetch(`${gateways[0]!.url}/metrics`).then((r) => r.text()))
      assert.match(metrics, /^or_balancer_store_degraded 0$/m)
      console.log(
        `fleet cap 4/key: max in flight per key at the upstream ${max.join(",")} (without Redis: ${aloneMax})`
      )
    })
  )

  it.scopedLive(
    "a key's credit holds summed over 3 replicas: $0 overspend at the upstream, the whole cap used",
    () =>
      Effect.gen(function* () {
        const strategy = [{ name: "credit-aware", estimate: 0.01 }]
        const body = chatBody({ model: PENNY })
        // Control: three gateways without Redis each believe they may spend the whole $0.50.
        const alone = yield* fleet(strategy, { redis: false, latencyMs: 100, keys: oneKey, sim: capped })
        yield* burst(
          alone.gateways.map((g) => g.url),
          25,
          body
        )
        const aloneKey = (yield* alone.sim.stats).keys.k1!
        assert.isAbove(aloneKey.requests, 50)
        assert.isAbove(aloneKey.overspend, 0)

        const { sim, gateways } = yield* fleet(strategy, {
          redis: true,
          latencyMs: 100,
          keys: oneKey,
          sim: capped
        })
        const answers = yield* burst(
          gateways.map((g) => g.url),
          25,
          body
        )
        const k1 = (yield* sim.stats).keys.k1!
        const served = answers.filter((a) => a.status === 200).length
        console.log(
          `fleet credit $0.50 at $0.01, 75 requests over 3 replicas: ${served} served, upstream requests ${k1.requests}, ` +
            `spend $${k1.spend.toFixed(2)}, overspend $${k1.overspend.toFixed(2)} ` +
            `(without Redis: ${aloneKey.requests} upstream requests, overspend $${aloneKey.overspend.toFixed(2)})`
        )
        assert.strictEqual(k1.overspend, 0)
        assert.strictEqual(k1.byOutcome["402"] ?? 0, 0)
        assert.strictEqual(k1.requests, 50)
        assert.strictEqual(served, 50)
        assert.closeTo(k1.spend, 0.5, 1e-9)
        // Every other request was refused by the gateway itself, never sent.
        for (const a of answers) if (a.status !== 200) assert.strictEqual(a.status, 503)
        // One `GET /key` per refresh over the fleet, not one per replica.
        assert.strictEqual(k1.keyLookups, 1)
      }),
    60_000
  )

  it.scopedLive(
    "threshold reserves within the fleet's credit too: $0.50 at $0.01 over 3 replicas serves 50, $0 overspend",
    () =>
      Effect.gen(function* () {
        // The default estimate: learned from the answers, the threshold ($0.01) reserved until then.
        const strategy = [{ name: "threshold", threshold: 0.01 }, { name: "round-robin" }]
        const body = chatBody({ model: PENNY })
        const alone = yield* fleet(strategy, { redis: false, latencyMs: 100, keys: oneKey, sim: capped })
        yield* burst(
          alone.gateways.map((g) => g.url),
          25,
          body
        )
        const aloneKey = (yield* alone.sim.stats).keys.k1!
        assert.isAbove(aloneKey.overspend, 0)

        const { sim, gateways } = yield* fleet(strategy, {
          redis: true,
          latencyMs: 100,
          keys: oneKey,
          sim: capped
        })
        const answers = yield* burst(
          gateways.map((g) => g.url),
          25,
          body
        )
        const k1 = (yield* sim.stats).keys.k1!
        const served = answers.filter((a) => a.status === 200).length
        console.log(
          `fleet threshold $0.50 at $0.01, 75 requests over 3 replicas: ${served} served, upstream requests ${k1.requests}, ` +
            `overspend $${k1.overspend.toFixed(2)} (without Redis: overspend $${aloneKey.overspend.toFixed(2)})`
        )
        assert.strictEqual(k1.overspend, 0)
        assert.strictEqual(k1.byOutcome["402"] ?? 0, 0)
        assert.strictEqual(k1.requests, 50)
        assert.strictEqual(served, 50)
        assert.closeTo(k1.spend, 0.5, 1e-9)
        for (const a of answers) if (a.status !== 200) assert.strictEqual(a.status, 503)
        assert.strictEqual(k1.keyLookups, 1)
      }),
    60_000
  )

  it.scopedLive(
    "the tail of the credit: three $0.50 keys at $0.01 and a cap of 4 over 3 replicas serve all 150 requests",
    () =>
      Effect.gen(function* () {
        // The scale-out bench's limits run: 210 requests at once for 150 requests' worth of credit.
        const strategy = [
          { name: "concurrency-limited", defaultMax: 4 },
          { name: "credit-aware", estimate: 0.01 }
        ]
        const sim = {
          keys: simKeys(LABELS).map((k) => ({ ...k, limit: 0.5 })),
          models: capped.models
        }
        const { sim: s, gateways } = yield* fleet(strategy, { redis: true, latencyMs: 50, sim })
        const answers = yield* burst(
          gateways.map((g) => g.url),
          70,
          chatBody({ model: PENNY })
        )
        const stats = yield* s.stats
        const served = answers.filter((a) => a.status === 200).length
        const statuses = answers.reduce<Record<number, number>>(
          (m, a) => ((m[a.status] = (m[a.status] ?? 0) + 1), m),
          {}
        )
        console.log(
          `fleet credit tail: ${served} of 150 served (${JSON.stringify(statuses)}), spend $${stats.spend.toFixed(2)}, ` +
            `overspend $${stats.overspend.toFixed(2)}, max in flight ${LABELS.map((l) => stats.keys[l]!.maxInFlight).join(",")}`
        )
        assert.strictEqual(stats.overspend, 0)
        assert.strictEqual(served, 150)
        assert.closeTo(stats.spend, 1.5, 1e-9)
      }),
    60_000
  )

  it.scopedLive(
    "a key revoked (401) on one replica is ejected on the others' /status within 100 ms (plus time waiting for a CPU) and gets no new traffic from them",
    () =>
      Effect.gen(function* () {
        const { sim, gateways } = yield* fleet([{ name: "health-aware" }, { name: "round-robin" }], {
          redis: true,
          latencyMs: 0
        })
        yield* sim.updateKey("k1", { revoked: true })
        // Replica 0 meets the 401 (round robin reaches k1 within three requests) and fails over.
        // The ejection is timed from the answer of the request that met it.
        // Time the machine withheld from this process (where the replicas run) and from redis-server,
        // waiting for a CPU, is not the fleet's: measured from then and allowed for.
        let ejectedAt = 0
        let waited0 = 0
        for (let i = 0; i < 3; i++) {
          const r = yield* post(`${gateways[0]!.url}/v1/chat/completions`, chatBody())
          assert.strictEqual(r.status, 200)
          if (ejectedAt === 0 && ((yield* sim.stats).keys.k1!.byOutcome["401"] ?? 0) > 0) {
            ejectedAt = performance.now()
            waited0 = runqueueWaitMs()
          }
        }
        assert.strictEqual((yield* sim.stats).keys.k1!.byOutcome["401"], 1)
        // Until the other replicas' /status show k1 ejected: the fleet's ejection, not their own.
        const ejectedOn = (url: string) =>
          Effect.map(statusOf(url), (s) => s.keys.find((k) => k.id === "k1")!)
        const seen = new Map<string, number>()
        while (seen.size < 2 && performance.now() - ejectedAt < 5_000) {
          for (const gw of gateways.slice(1)) {
            if (seen.has(gw.url)) continue
            const k1 = yield* ejectedOn(gw.url)
            if (k1.health === "ejected") {
              assert.strictEqual(k1.reason, "Unauthorized")
              seen.set(gw.url, performance.now() - ejectedAt)
            }
          }
          if (seen.size < 2) yield* Effect.sleep(5)
        }
        const took = Math.max(...seen.values())
        const waited = runqueueWaitMs() - waited0
        console.log(
          `ejected on both other replicas' /status after ${took.toFixed(0)} ms (waiting for a CPU ${waited.toFixed(0)} ms)`
        )
        assert.strictEqual(seen.size, 2)
        assert.isAtMost(took - waited, 100)
        yield* sim.resetStats
        for (let i = 0; i < 12; i++) {
          const r = yield* post(`${gateways[1 + (i % 2)]!.url}/v1/chat/completions`, chatBody())
          assert.strictEqual(r.status, 200)
        }
        const stats = yield* sim.stats
        // Without sharing, round robin on replicas 1 and 2 would each send k1 a request.
        assert.strictEqual(stats.keys.k1!.requests, 0)
        assert.strictEqual(stats.keys.k2!.requests + stats.keys.k3!.requests, 12)
      })
  )

  it.scopedLive(
    "weighted shares hold over requests spread across 3 replicas; a session maps to one key from any replica",
    () =>
      Effect.gen(function* () {
        const weights = [1, 2, 3]
        const keys = LABELS.map((label, i) => ({
          id: label,
          secretEnv: `KEY_${label.toUpperCase()}`,
          account: "acme",
          weight: weights[i]
        }))
        const { sim, gateways } = yield* fleet([{ name: "sticky" }, { name: "weighted" }], {
          redis: true,
          latencyMs: 0,
          keys
        })
        const total = 594 // 3 replicas × 33 rounds of 6 (weights 1+2+3)
        yield* Effect.forEach(
          Array.from({ length: total }, (_, i) => gateways[i % 3]!.url),
          (url) => post(`${url}/v1/chat/completions`, chatBody()),
          { concurrency: 12, discard: true }
        )
        const stats = yield* sim.stats
        const shares = LABELS.map((l) => stats.keys[l]!.requests / total)
        weights.forEach((w, i) => assert.isAtMost(Math.abs(shares[i]! - w / 6), 0.01))
        console.log(
          `weighted 1:2:3 over 3 replicas, ${total} requests: ${shares.map((x) => x.toFixed(4)).join(", ")}`
        )
        for (let s = 0; s < 8; s++) {
          const before = yield* sim.stats
          for (const g of gateways) {
            const r = yield* post(`${g.url}/v1/chat/completions`, chatBody({ session_id: `session-${s}` }))
            assert.strictEqual(r.status, 200)
          }
          const after = yield* sim.stats
          const hit = LABELS.filter((l) => after.keys[l]!.requests > before.keys[l]!.requests)
          assert.strictEqual(hit.length, 1)
          assert.strictEqual(after.keys[hit[0]!]!.requests - before.keys[hit[0]!]!.requests, 3)
        }
      }),
    60_000
  )
})
