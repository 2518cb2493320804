/**
 * Named clients' budgets over three gateway replicas on one real redis-server (started by the
 * project's scripts/redis.sh, stopped by PID) in front of one simulator whose model costs exactly
 * $0.01 a request. Reservations are priced from the simulator's `/models` price table.
 */
import { execFileSync } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Scenarios from "@or-balancer/simulator/Scenarios"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import { chatBody, envOf, fileFor, post, simKeys } from "./GatewaySupport.js"

const SCRIPT = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../../../scripts/redis.sh")
const servers: Array<string> = []
const startRedis = (port?: number) => {
  const [p, pid] = execFileSync(SCRIPT, port === undefined ? ["start"] : ["start", String(port)], {
    encoding: "utf8"
  })
    .trim()
    .split(" ")
  servers.push(pid!)
  return { port: Number(p), pid: pid! }
}
const stopRedis = (pid: string) => {
  execFileSync(SCRIPT, ["stop", pid])
  servers.splice(servers.indexOf(pid), 1)
}
afterAll(() => {
  for (const pid of [...servers]) stopRedis(pid)
})

const ALPHA = "client-alpha-token-0123456789"
const as = { authorization: `Bearer ${ALPHA}` }
const body = chatBody({ model: Scenarios.model })

const simulator = Simulator.make({
  seed: 7,
  keys: simKeys(["f1", "f2", "f3"]),
  models: [
    ...Simulator.defaultModels,
    { id: Scenarios.model, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }
  ],
  latency: { kind: "fixed", ms: 30 }
})

/** Replica `i`'s config: one client with `usd` a day, priced from the table ($0.01 a request here). */
const replicaConfig = (
  sim: Simulator.Handle,
  redisPort: number,
  i: number,
  usd: number,
  client: Record<string, unknown> = { budget: { usd, period: "daily" } }
) =>
  GatewayConfig.decode(
    fileFor(sim, {
      clients: [{ id: "alpha", tokenEnv: "ALPHA_TOKEN", ...client }],
      // A loaded machine (CI runs test files side by side) may take over the default 100 ms.
      redis: {
        url: `redis://127.0.0.1:${redisPort}/0`,
        replicaId: `r${i}`,
        replicas: 3,
        commandTimeoutMs: 2_000
      }
    })
  ).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([...envOf(sim), ["ALPHA_TOKEN", ALPHA]]))))

/** A replica in a scope of its own, so a test can restart it. */
const replica = (
  sim: Simulator.Handle,
  redisPort: number,
  i: number,
  usd: number,
  client?: Record<string, unknown>
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const gw = yield* Scope.extend(
      Effect.flatMap(replicaConfig(sim, redisPort, i, usd, client), Gateway.make),
      scope
    )
    return { gw, close: Scope.close(scope, Exit.void) }
  })

const load = (urls: ReadonlyArray<string>, perReplica: number) =>
  Effect.forEach(
    urls.flatMap((url) => Array.from({ length: perReplica }, () => url)),
    (url) => post(`${url}/v1/chat/completions`, body, as),
    { concurrency: "unbounded" }
  )

const nextUtcMidnight = () => {
  const d = new Date()
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
}

describe("named clients over a fleet on Redis", () => {
  it.scopedLive(
    "$0.50 at $0.01 a request over 3 replicas under concurrent load: 50 served, the rest 429 with the client's reason and reset; a restarted replica still refuses",
    () =>
      Effect.gen(function* () {
        const redis = startRedis()
        const sim = yield* simulator
        const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(sim, redis.port, i, 0.5))
        const answers = yield* load(
          replicas.map((r) => r.gw.url),
          40
        )
        const served = answers.filter((a) => a.status === 200).length
        const refused = answers.filter((a) => a.status === 429)
        assert.strictEqual(served, 50)
        assert.strictEqual(refused.length, 70)
        for (const r of refused) {
          assert.strictEqual(JSON.parse(r.text).error.code, "client_budget_exceeded")
          assert.strictEqual(Number(r.headers.get("x-ratelimit-reset")), nextUtcMidnight())
        }
        // Measured at the upstream: exactly $0.50 spent, 50 calls.
        const stats = yield* sim.stats
        const calls = Object.values(stats.keys).reduce((s, k) => s + k.requests, 0)
        assert.strictEqual(calls, 50)
        // Every replica's /status shows the fleet's spend, not its own.
        for (const r of replicas) {
          const row = (yield* r.gw.status).clients[0]!
          assert.closeTo(row.budget!.spentUsd, 0.5, 1e-9)
          assert.closeTo(row.budget!.remainingUsd, 0, 1e-9)
        }
        // A replica restarted (a new process, nothing kept locally) still finds the budget spent.
        yield* replicas[0]!.close
        const again = yield* replica(sim, redis.port, 0, 0.5)
        const after = yield* post(`${again.gw.url}/v1/chat/completions`, body, as)
        assert.strictEqual(after.status, 429)
        assert.strictEqual(JSON.parse(after.text).error.code, "client_budget_exceeded")
        assert.closeTo((yield* again.gw.status).clients[0]!.budget!.spentUsd, 0.5, 1e-9)
        yield* again.close
        for (const r of replicas.slice(1)) yield* r.close
      })
  )

  it.scopedLive(
    "a client's rpm holds over the fleet: 6 a minute over 3 replicas, the rest 429 with the wait",
    () =>
      Effect.gen(function* () {
        const redis = startRedis()
        const sim = yield* simulator
        const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(sim, redis.port, i, 0, { rpm: 6 }))
        const answers = yield* load(
          replicas.map((r) => r.gw.url),
          5
        )
        assert.strictEqual(answers.filter((a) => a.status === 200).length, 6)
        const refused = answers.filter((a) => a.status === 429)
        assert.strictEqual(refused.length, 9)
        for (const r of refused) {
          assert.strictEqual(JSON.parse(r.text).error.code, "client_rate_limited")
          assert.isAtLeast(Number(r.headers.get("retry-after")), 58)
        }
        for (const r of replicas) yield* r.close
      })
  )

  it.scopedLive(
    "Redis down: each replica serves its share ($0.30 ÷ 3), never the whole; when Redis returns the fleet counts that spend",
    () =>
      Effect.gen(function* () {
        const redis = startRedis()
        const sim = yield* simulator
        const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(sim, redis.port, i, 0.3))
        const urls = replicas.map((r) => r.gw.url)
        // $0.06 spent through Redis first: the shares are then ($0.30 - $0.06) ÷ 3 = 8 requests each.
        const first = yield* load(urls, 2)
        assert.deepStrictEqual(
          first.map((a) => a.status),
          first.map(() => 200)
        )
        // The settlements land, and every replica reads the fleet's figure (its sync does it each second too).
        yield* Effect.sleep(300)
        for (const r of replicas)
          assert.closeTo((yield* r.gw.status).clients[0]!.budget!.spentUsd, 0.06, 1e-9)
        stopRedis(redis.pid)
        const down = yield* load(urls, 12)
        assert.strictEqual(down.filter((a) => a.status === 200).length, 24)
        assert.strictEqual(down.filter((a) => a.status === 429).length, 12)
        // Redis back, empty (no persistence): within a sync the replicas restore what they had seen
        // spent ($0.06) and add what they spent while it was away ($0.24): the budget is spent.
        startRedis(redis.port)
        yield* Effect.sleep(2_500)
        const back = yield* load(urls, 2)
        assert.deepStrictEqual(
          back.map((a) => a.status),
          back.map(() => 429)
        )
        for (const r of replicas) assert.closeTo((yield* r.gw.status).clients[0]!.budget!.spentUsd, 0.3, 1e-9)
        for (const r of replicas) yield* r.close
      })
  )
})
