/**
 * Faults of a gateway fleet on one real redis-server (scripts/redis.sh, stopped by PID): a replica
 * that is a real `or-balancer serve` process killed with SIGKILL gives its permits and credit back
 * within the lease TTL; Redis restarted empty mid-load fails no request and its credit ledger is
 * rebuilt from `GET /key`. Measured at the upstream (the simulator).
 */
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as CapacityLeases from "@or-balancer/redis/CapacityLeases"
import * as RedisStore from "@or-balancer/redis/RedisStore"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, envOf, fileFor, post, simKeys } from "./GatewaySupport.js"

const here = Path.dirname(fileURLToPath(import.meta.url))
const SCRIPT = Path.resolve(here, "../../../scripts/redis.sh")
const BIN = Path.resolve(here, "../bin/or-balancer.js")

const launch = (port?: number) => {
  const out = execFileSync(SCRIPT, port === undefined ? ["start"] : ["start", String(port)], {
    encoding: "utf8"
  })
  const [p, pid] = out.trim().split(" ").map(Number)
  return { port: p!, pid: pid! }
}
let redis = launch()
const PORT = redis.port
const URL = `redis://127.0.0.1:${PORT}/0`
afterAll(() => execFileSync(SCRIPT, ["stop", String(redis.pid)]))

const PENNY = "sim/penny"
const simWith = (limit: number, latencyMs: number) =>
  Simulator.make({
    seed: 7,
    keys: [{ ...simKeys(["k1"])[0]!, limit }],
    models: [{ id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }],
    latency: { kind: "fixed", ms: latencyMs }
  })
const keys = [{ id: "k1", secretEnv: "KEY_K1", account: "acme" }]
const strategy = [
  { name: "concurrency-limited", defaultMax: 4 },
  { name: "credit-aware", estimate: 0.01 }
]
const body = chatBody({ model: PENNY })
// The test's own reads of Redis, retried: a 100 ms command timeout on a loaded machine is not
// what is under test.
const withRedis = <A, E>(e: Effect.Effect<A, E, RedisStore.RedisStore>) =>
  Effect.provide(
    Effect.retry(e, { times: 10, schedule: Schedule.spaced(50) }),
    RedisStore.layer({ url: URL })
  )

describe("Gateway fleet faults", () => {
  it.scopedLive(
    "a replica process killed with SIGKILL gives its permits and credit back within the lease TTL",
    () =>
      Effect.gen(function* () {
        const sim = yield* simWith(1, 800)
        const ttlMs = 1_500
        const redisSection = (replicaId: string) => ({ url: URL, replicaId, replicas: 2, leaseTtlMs: ttlMs })
        const dir = fs.mkdtempSync(Path.join(os.tmpdir(), "or-balancer-fleet-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
        const file = Path.join(dir, "gateway.json")
        fs.writeFileSync(
          file,
          JSON.stringify(fileFor(sim, { keys, strategy, redis: redisSection("doomed") }, ["k1"]))
        )
        let out = ""
        const child = spawn(process.execPath, [BIN, "serve", "--config", file], {
          env: {
            PATH: process.env.PATH ?? "",
            HOME: process.env.HOME ?? "",
            ...Object.fromEntries(envOf(sim))
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        child.stdout.on("data", (b: Buffer) => (out += b.toString()))
        child.stderr.on("data", (b: Buffer) => (out += b.toString()))
        yield* Effect.addFinalizer(() => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL")))
        let url: string | undefined
        for (let i = 0; i < 2_400 && url === undefined; i++) {
          yield* Effect.sleep(25)
          url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]
        }
        assert.isDefined(url, out)
        const survivor = yield* Effect.flatMap(
          configFor(sim, { keys, strategy, redis: redisSection("survivor") }, ["k1"]),
          Gateway.make
        )

        // The child takes permits and a credit slice for requests that are still in flight.
        yield* Effect.forkScoped(
          Effect.forEach(Array.from({ length: 4 }), () => post(`${url}/v1/chat/completions`, body), {
            concurrency: "unbounded"
          })
        )
        const doomedSlices = withRedis(
          Effect.map(
            Effect.all([CapacityLeases.inspectPermits("k1"), CapacityLeases.inspectCredit("k1")]),
            ([p, c]) => [
              p.slices.find((s) => s.replicaId === "doomed")?.granted ?? 0,
              c.slices.find((s) => s.replicaId === "doomed")?.granted ?? 0
            ]
          )
        )
        let held = [0, 0]
        for (let i = 0; i < 100 && (held[0] === 0 || held[1] === 0); i++) {
          yield* Effect.sleep(20)
          held = yield* doomedSlices
        }
        assert.isAbove(held[0]!, 0)
        assert.isAbove(held[1]!, 0)

        const killedAt = performance.now()
        process.kill(child.pid!, "SIGKILL")
        while ((held[0]! > 0 || held[1]! > 0) && performance.now() - killedAt < ttlMs + 2_000) {
          yield* Effect.sleep(50)
          held = yield* doomedSlices
        }
        const seconds = (performance.now() - killedAt) / 1_000
        assert.deepStrictEqual(held, [0, 0])
        assert.isAtMost(seconds, ttlMs / 1_000 + 0.5) // + polling, on a loaded machine

        // The survivor now runs the whole cap (4 in flight at the upstream) on the whole credit left.
        while ((yield* sim.stats).inFlight > 0) yield* Effect.sleep(20)
        yield* sim.resetStats
        const answers = yield* Effect.forEach(
          Array.from({ length: 8 }),
          () => post(`${survivor.url}/v1/chat/completions`, body),
          { concurrency: "unbounded" }
        )
        const k1 = (yield* sim.stats).keys.k1!
        console.log(
          `SIGKILLed replica: permits and credit slice back ${seconds.toFixed(2)} s after the kill ` +
            `(TTL ${ttlMs / 1_000} s); survivor then ran ${k1.maxInFlight} in flight (cap 4)`
        )
        assert.deepStrictEqual(
          answers.map((a) => a.status),
          answers.map(() => 200)
        )
        assert.strictEqual(k1.maxInFlight, 4)
      }),
    120_000
  )

  it.scopedLive(
    "Redis restarted empty mid-load: 0 failed requests, $0 overspend, the credit ledger rebuilt from GET /key",
    () =>
      Effect.gen(function* () {
        const sim = yield* simWith(5, 40)
        const gateways = yield* Effect.forEach([0, 1, 2], (i) =>
          Effect.flatMap(
            configFor(
              sim,
              {
                keys,
                strategy,
                deadlines: { keyWaitMs: 10_000, drainMs: 2_000 },
                redis: { url: URL, replicaId: `r${i}`, replicas: 3 }
              },
              ["k1"]
            ),
            Gateway.make
          )
        )
        const load = Effect.forEach(
          gateways,
          (g) =>
            Effect.forEach(Array.from({ length: 80 }), () => post(`${g.url}/v1/chat/completions`, body), {
              concurrency: 4
            }),
          { concurrency: "unbounded" }
        )
        const running = yield* Effect.fork(load)
        // Restart once the load is well under way.
        for (let i = 0; i < 250 && (yield* sim.stats).keys.k1!.requests < 40; i++) yield* Effect.sleep(20)
        const before = (yield* sim.stats).keys.k1!
        execFileSync(SCRIPT, ["stop", String(redis.pid)])
        redis = launch(PORT)
        const answers = (yield* running).flat()
        const k1 = (yield* sim.stats).keys.k1!
        // Renewals after the restart settle the spend (each replica's last within a renewal or two
        // of its last answer): read the ledger until it has all of it, for up to 5 s, since a loaded
        // machine can delay those renewals past any short sleep. Spend never settled stays above.
        let ledger = yield* withRedis(CapacityLeases.inspectCredit("k1"))
        const short = () => ledger.base < 0 || (ledger.base - ledger.spent) / 1e6 > k1.limitRemaining! + 1e-9
        for (let i = 0; i < 50 && short(); i++) {
          yield* Effect.sleep(100)
          ledger = yield* withRedis(CapacityLeases.inspectCredit("k1"))
        }
        const fleetLeft = (ledger.base - ledger.spent) / 1e6
        console.log(
          `Redis restarted empty after ${before.requests} of 240 requests: ` +
            `${answers.filter((a) => a.status === 200).length} served, max in flight ${k1.maxInFlight} (cap 4), ` +
            `overspend $${k1.overspend.toFixed(2)}, GET /key ${k1.keyLookups}, ` +
            `ledger left $${fleetLeft.toFixed(2)} vs upstream $${k1.limitRemaining!.toFixed(2)}`
        )
        for (const a of answers.filter((a) => a.status !== 200)) console.log(`${a.status} ${a.text}`)
        assert.isAbove(before.requests, 0)
        assert.isBelow(before.requests, 200)
        assert.deepStrictEqual(
          answers.map((a) => a.status),
          answers.map(() => 200)
        )
        assert.strictEqual(k1.overspend, 0)
        // The cap holds through the empty restart: replicas re-register the slices they still hold
        // before the emptied Redis grants anyone new ones.
        assert.isAtMost(k1.maxInFlight, 4)
        // The new ledger came from a lookup (one after the restart, or the fleet's answer a replica
        // still holds when it is under 10 s old), and agrees with the upstream.
        assert.isAtLeast(k1.keyLookups, 1)
        assert.isAtLeast(ledger.base, 0)
        // Never above the upstream's figure: spend made while Redis was away is settled into the new
        // ledger although the lookup already counted it (the safe side, until the next lookup).
        assert.isAtMost(fleetLeft, k1.limitRemaining! + 1e-9)
        assert.isAbove(fleetLeft, 1)
      }),
    60_000
  )
})
