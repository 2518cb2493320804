/**
 * `pnpm demo --replicas 3`: three gateway replicas in front of one pool, first each on its own
 * (every replica enforces every limit by itself, so the upstream sees them multiplied), then
 * sharing one Redis (started by scripts/redis.sh, stopped by PID), where caps and credit hold over
 * the fleet. Prints a table per replica and one per key, as the upstream (the simulator) saw it.
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Gateway from "@or-balancer/gateway/Gateway"
import * as GatewayConfig from "@or-balancer/gateway/GatewayConfig"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Runner from "./Runner.js"

const REDIS_SH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../scripts/redis.sh")
const PENNY = "sim/penny"
const CAP = 4
/** Three keys: a $0.50 cap (50 requests at $0.01), a $1.00 cap, and one without a limit. */
const KEYS = [
  { label: "north", limit: 0.5 },
  { label: "east", limit: 1 },
  { label: "south", limit: null }
]

export interface ReplicaRow {
  readonly replica: string
  readonly requests: number
  readonly served: number
  readonly refused: number
  readonly p50Ms: number
}

export interface KeyRow {
  readonly id: string
  readonly cap: number
  readonly maxInFlight: number
  readonly requests: number
  readonly spendUsd: number
  readonly limitUsd: number | null
  readonly overspendUsd: number
  readonly upstream402: number
}

export interface Run {
  readonly redis: boolean
  readonly replicas: ReadonlyArray<ReplicaRow>
  readonly keys: ReadonlyArray<KeyRow>
}

const runOnce = (replicas: number, perReplica: number, redisUrl: string | undefined) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 16,
        keys: KEYS.map((k, i) => ({
          label: k.label,
          account: "fleet",
          secret: Simulator.simulatedSecret(16, i),
          limit: k.limit
        })),
        models: [{ id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }],
        latency: { kind: "fixed", ms: 100 }
      })
      const env = new Map<string, string>([["DEMO_FLEET_TOKEN", "demo-fleet-token-0000"]])
      sim.keys.forEach((k, i) => env.set(`DEMO_FLEET_KEY_${i}`, Redacted.value(k.secret)))
      const gateways = yield* Effect.forEach(
        Array.from({ length: replicas }, (_, i) => i),
        (i) =>
          GatewayConfig.decode({
            listen: { host: "127.0.0.1", port: 0 },
            baseUrl: sim.baseUrl,
            tokens: ["DEMO_FLEET_TOKEN"],
            keys: KEYS.map((k, j) => ({ id: k.label, secretEnv: `DEMO_FLEET_KEY_${j}`, account: "fleet" })),
            strategy: [
              { name: "health-aware" },
              { name: "concurrency-limited", defaultMax: CAP },
              { name: "credit-aware", estimate: 0.01 }
            ],
            deadlines: { keyWaitMs: 5_000 },
            // The tables say what happened; the per-event log lines would bury them.
            log: { level: "error" },
            ...(redisUrl === undefined ? {} : { redis: { url: redisUrl, replicaId: `replica-${i + 1}` } })
          }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)), Effect.flatMap(Gateway.make))
      )
      const body = JSON.stringify({ model: PENNY, messages: [{ role: "user", content: "hello" }] })
      const rows = yield* Effect.forEach(
        gateways,
        (gw, i) =>
          Effect.map(
            Effect.forEach(
              Array.from({ length: perReplica }),
              () =>
                Effect.promise(async () => {
                  const t = performance.now()
                  const r = await fetch(`${gw.url}/v1/chat/completions`, {
                    method: "POST",
                    headers: {
                      authorization: "Bearer demo-fleet-token-0000",
                      "content-type": "application/json"
                    },
                    body
                  })
                  await r.text()
                  return { ok: r.status === 200, ms: performance.now() - t }
                }),
              { concurrency: 24 }
            ),
            (answers): ReplicaRow => {
              const ms = answers
                .filter((a) => a.ok)
                .map((a) => a.ms)
                .sort((a, b) => a - b)
              const served = ms.length
              return {
                replica: `replica-${i + 1}`,
                requests: answers.length,
                served,
                refused: answers.length - served,
                p50Ms: served === 0 ? 0 : ms[Math.floor(served / 2)]!
              }
            }
          ),
        { concurrency: "unbounded" }
      )
      const stats = yield* sim.stats
      const keys = KEYS.map((k): KeyRow => {
        const s = stats.keys[k.label]!
        return {
          id: k.label,
          cap: CAP,
          maxInFlight: s.maxInFlight,
          requests: s.requests,
          spendUsd: s.spend,
          limitUsd: k.limit,
          overspendUsd: s.overspend,
          upstream402: s.byOutcome["402"] ?? 0
        }
      })
      return { redis: redisUrl !== undefined, replicas: rows, keys } satisfies Run
    })
  )

const print = (run: Run) =>
  Effect.gen(function* () {
    yield* Console.log(
      run.redis
        ? `\n3 replicas sharing one Redis: caps and credit hold over the fleet`
        : `\n3 replicas, each on its own (no Redis): every limit multiplied by 3`
    )
    yield* Console.log("replica      requests  served  refused  p50 ms")
    for (const r of run.replicas) {
      yield* Console.log(
        `${r.replica.padEnd(12)} ${String(r.requests).padStart(8)} ${String(r.served).padStart(7)} ${String(r.refused).padStart(8)} ${r.p50Ms.toFixed(0).padStart(7)}`
      )
    }
    yield* Console.log("key     cap  max in flight  requests  spend    limit      overspend  402s")
    for (const k of run.keys) {
      yield* Console.log(
        [
          k.id.padEnd(7),
          String(k.cap).padStart(3),
          String(k.maxInFlight).padStart(14),
          String(k.requests).padStart(9),
          Runner.usd(k.spendUsd).padStart(8),
          (k.limitUsd === null ? "unlimited" : Runner.usd(k.limitUsd)).padStart(10),
          Runner.usd(k.overspendUsd).padStart(10),
          String(k.upstream402).padStart(5)
        ].join(" ")
      )
    }
    const served = run.replicas.reduce((s, r) => s + r.served, 0)
    const overspend = run.keys.reduce((s, k) => s + k.overspendUsd, 0)
    const maxOver = Math.max(...run.keys.map((k) => k.maxInFlight))
    yield* Console.log(
      `fleet: served ${served}, max in flight on a key ${maxOver} (cap ${CAP}), overspend ${Runner.usd(overspend)}`
    )
  })

/** Both runs, printed; Redis is started for the second and stopped after it. */
export const run = (replicas: number, perReplica = 120) =>
  Effect.gen(function* () {
    yield* Console.log(
      `${replicas} gateway replicas, ${perReplica} requests each at concurrency 24; keys north ($0.50), east ($1.00), south (no limit), $0.01 a request, cap ${CAP} per key`
    )
    const alone = yield* runOnce(replicas, perReplica, undefined)
    yield* print(alone)
    const [port, pid] = yield* Effect.sync(() =>
      execFileSync(REDIS_SH, ["start"], { encoding: "utf8" }).trim().split(" ")
    )
    const shared = yield* runOnce(replicas, perReplica, `redis://127.0.0.1:${port}/0`).pipe(
      Effect.ensuring(Effect.sync(() => execFileSync(REDIS_SH, ["stop", pid!])))
    )
    yield* print(shared)
    return { alone, shared }
  })
