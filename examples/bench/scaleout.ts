/**
 * `pnpm bench` section "scale-out" (issue 16): gateway replicas, each its own `or-balancer serve`
 * process, against one simulator with a fixed upstream latency, with and without one Redis
 * (started by scripts/redis.sh, stopped by PID).
 *
 * - Throughput and latency: 1 replica without Redis, 3 replicas without Redis (the same machine
 *   load, nothing shared: the control) and 3 replicas on Redis, each replica loaded by its own
 *   `connections`, in interleaved rounds. Per-replica throughput of 3-on-Redis ÷ 1-alone (target
 *   ≥ 0.9) and added p50 (target < 0.3 ms); CPU per request from /proc.
 * - Limits: 3 replicas on Redis, a cap of 4 per key and keys capped at $0.50 at $0.01 a request:
 *   max in flight per key at the upstream and overspend.
 * - Faults: Redis stopped mid-load and started again empty (failed requests), a replica SIGKILLed
 *   (seconds until its permit and credit slices are gone from Redis).
 *
 * Run alone: `npx tsx examples/bench/scaleout.ts [--quick]`; prints one JSON line last.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as CapacityLeases from "@or-balancer/redis/CapacityLeases"
import * as RedisStore from "@or-balancer/redis/RedisStore"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { load, quantile } from "./gateway.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "../..")
const REDIS_SH = path.join(root, "scripts/redis.sh")
const BIN = path.join(root, "packages/gateway/bin/or-balancer.js")
const TOKEN = "scaleout-bench-token"
const quick = process.argv.includes("--quick")
const LATENCY_MS = 50
const CONNECTIONS = 16
const PER_REPLICA = quick ? 600 : 2_000
const ROUNDS =
  process.env.SCALEOUT_ROUNDS === undefined ? (quick ? 1 : 3) : Number(process.env.SCALEOUT_ROUNDS)
const PENNY = "sim/penny"
const THROUGHPUT_STACK = [
  { name: "health-aware" },
  { name: "concurrency-limited", defaultMax: 64 },
  { name: "credit-aware", estimate: 0.001 }
]
const LIMITS_STACK = [
  { name: "concurrency-limited", defaultMax: 4 },
  { name: "credit-aware", estimate: 0.01 }
]

export interface ScaleOutResult {
  readonly upstreamLatencyMs: number
  readonly connectionsPerReplica: number
  readonly requestsPerReplica: number
  readonly rounds: number
  readonly rows: ReadonlyArray<{
    readonly name: string
    readonly replicas: number
    readonly rpsPerReplica: number
    readonly p50Ms: number
    readonly p99Ms: number
    readonly cpuUsPerRequest: number
    readonly errors: number
  }>
  /** Median over rounds of (3 on Redis per-replica req/s) ÷ (1 alone req/s). */
  readonly perReplicaThroughputRatio: number
  /** The same against 3 replicas without Redis (the machine's own share of the slowdown removed). */
  readonly vsThreeWithoutRedis: number
  /** Median over rounds of p50(3 on Redis) − p50(1 alone), and − p50(3 without Redis). */
  readonly addedP50Ms: number
  readonly addedP50VsThreeWithoutRedisMs: number
  readonly limits: {
    readonly cap: number
    readonly maxInFlightPerKey: ReadonlyArray<number>
    readonly maxInFlightPerKeyWithoutRedis: ReadonlyArray<number>
    readonly served: number
    /** Answers by status on Redis (0: no answer). */
    readonly statuses: Readonly<Record<string, number>>
    readonly creditRequests: number
    readonly overspendUsd: number
    readonly overspendUsdWithoutRedis: number
  }
  readonly redisRestart: { readonly requests: number; readonly failed: number }
  readonly sigkill: { readonly ttlSeconds: number; readonly secondsUntilReturned: number }
}

// --- processes ----------------------------------------------------------------------------------

interface Replica {
  readonly url: string
  readonly proc: ChildProcess
}

const cpuMicros = (pid: number): number => {
  // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second).
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

const startReplica = async (
  dir: string,
  name: string,
  file: Record<string, unknown>,
  env: Record<string, string>
): Promise<Replica> => {
  const config = path.join(dir, `${name}.json`)
  fs.writeFileSync(config, JSON.stringify(file))
  const proc = spawn(process.execPath, [BIN, "serve", "--config", config], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString()))
  proc.stderr!.on("data", (b: Buffer) => (out += b.toString()))
  for (let i = 0; i < 4_800; i++) {
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]
    if (url !== undefined) return { url: `${url}/v1/chat/completions`, proc }
    if (proc.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 25))
  }
  proc.kill("SIGKILL")
  throw new Error(`replica ${name} did not start: ${out.slice(0, 500)}`)
}

const startRedis = (port?: number) => {
  const out = execFileSync(REDIS_SH, port === undefined ? ["start"] : ["start", String(port)], {
    encoding: "utf8"
  })
  const [p, pid] = out.trim().split(" ").map(Number)
  return { port: p!, pid: pid! }
}
const stopRedis = (pid: number) => execFileSync(REDIS_SH, ["stop", String(pid)])

// --- measurement --------------------------------------------------------------------------------

/** All replicas loaded at once, each by its own connections. */
const measure = async (replicas: ReadonlyArray<Replica>, perReplica: number) => {
  const cpu0 = replicas.map((r) => cpuMicros(r.proc.pid!))
  const t0 = performance.now()
  const loads = await Promise.all(
    replicas.map((r) => load(r.url, `Bearer ${TOKEN}`, perReplica, CONNECTIONS))
  )
  const seconds = (performance.now() - t0) / 1000
  const cpu = replicas.reduce((s, r, i) => s + cpuMicros(r.proc.pid!) - cpu0[i]!, 0)
  const latencies = loads.flatMap((l) => l.latencies).sort((a, b) => a - b)
  const requests = perReplica * replicas.length
  return {
    rpsPerReplica: requests / seconds / replicas.length,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    cpuUsPerRequest: cpu / requests,
    errors: loads.reduce((s, l) => s + l.errors, 0)
  }
}

const median = (xs: ReadonlyArray<number>) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5
  )

export const run = async (): Promise<ScaleOutResult> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-scaleout-"))
  const scope = Effect.runSync(Scope.make())
  const children: Array<ChildProcess> = []
  let redis = startRedis()
  const url = (db: number) => `redis://127.0.0.1:${redis.port}/${db}`
  try {
    const labels = ["so-1", "so-2", "so-3"]
    const sim = await Effect.runPromise(
      Simulator.make({
        seed: 3,
        keys: labels.map((label, i) => ({
          label,
          account: "so",
          secret: Simulator.simulatedSecret(3, i),
          limit: 1e6
        })),
        models: [
          { id: "openai/gpt-4o-mini", promptPrice: 0.15, completionPrice: 0.6 },
          { id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }
        ],
        latency: { kind: "fixed", ms: LATENCY_MS }
      }).pipe(Scope.extend(scope))
    )
    const env: Record<string, string> = { SO_TOKEN: TOKEN }
    sim.keys.forEach((k, i) => (env[`SO_KEY_${i}`] = Redacted.value(k.secret)))
    const fileFor = (strategy: unknown, redisSection?: Record<string, unknown>) => ({
      listen: { host: "127.0.0.1", port: 0 },
      baseUrl: sim.baseUrl,
      tokens: ["SO_TOKEN"],
      keys: labels.map((id, i) => ({ id, secretEnv: `SO_KEY_${i}` })),
      strategy,
      deadlines: { keyWaitMs: 10_000 },
      ...(redisSection === undefined ? {} : { redis: redisSection })
    })
    const start = async (name: string, file: Record<string, unknown>) => {
      const r = await startReplica(dir, name, file, env)
      children.push(r.proc)
      return r
    }

    // Throughput and latency.
    const alone = [await start("alone", fileFor(THROUGHPUT_STACK))]
    const three = await Promise.all([0, 1, 2].map((i) => start(`plain-${i}`, fileFor(THROUGHPUT_STACK))))
    const fleet = await Promise.all(
      [0, 1, 2].map((i) =>
        start(`fleet-${i}`, fileFor(THROUGHPUT_STACK, { url: url(1), replicaId: `so-${i}` }))
      )
    )
    if (ROUNDS > 0) for (const set of [alone, three, fleet]) await measure(set, Math.ceil(PER_REPLICA / 4)) // warm-up
    const rounds: Array<Record<string, Awaited<ReturnType<typeof measure>>>> = []
    for (let round = 0; round < ROUNDS; round++) {
      const r: Record<string, Awaited<ReturnType<typeof measure>>> = {}
      // Rotate the order so no configuration always runs first.
      const order = [
        ["alone", alone],
        ["three", three],
        ["fleet", fleet]
      ] as const
      for (let i = 0; i < order.length; i++) {
        const [name, set] = order[(i + round) % order.length]!
        r[name] = await measure(set, PER_REPLICA)
      }
      rounds.push(r)
      console.error(
        `[scale-out] round ${round + 1}: per-replica req/s alone ${r.alone!.rpsPerReplica.toFixed(0)}, 3 without Redis ${r.three!.rpsPerReplica.toFixed(0)}, 3 on Redis ${r.fleet!.rpsPerReplica.toFixed(0)}; p50 ${r.alone!.p50Ms.toFixed(2)} / ${r.three!.p50Ms.toFixed(2)} / ${r.fleet!.p50Ms.toFixed(2)} ms`
      )
    }
    const row = (name: string, key: string, replicas: number) => {
      const ms = rounds.map((r) => r[key]!)
      return {
        name,
        replicas,
        rpsPerReplica: median(ms.map((m) => m.rpsPerReplica)),
        p50Ms: median(ms.map((m) => m.p50Ms)),
        p99Ms: median(ms.map((m) => m.p99Ms)),
        cpuUsPerRequest: median(ms.map((m) => m.cpuUsPerRequest)),
        errors: ms.reduce((s, m) => s + m.errors, 0)
      }
    }
    const rows = [
      row("1 replica, no Redis", "alone", 1),
      row("3 replicas, no Redis (control)", "three", 3),
      row("3 replicas on one Redis", "fleet", 3)
    ]
    for (const r of [...alone, ...three]) r.proc.kill("SIGTERM")

    // Limits held over the fleet: cap 4 per key, $0.50 per key at $0.01 a request.
    const limitsFleet = async (db: number | undefined, tag: string) => {
      await Effect.runPromise(
        Effect.forEach(labels, (l) => sim.updateKey(l, { limit: 0.5, usage: 0 }), { discard: true })
      )
      await Effect.runPromise(sim.resetStats)
      const replicas = await Promise.all(
        [0, 1, 2].map((i) =>
          start(
            `${tag}-${i}`,
            fileFor(LIMITS_STACK, db === undefined ? undefined : { url: url(db), replicaId: `${tag}-${i}` })
          )
        )
      )
      const body = JSON.stringify({ model: PENNY, messages: [{ role: "user", content: "hi" }] })
      const answers = await Promise.all(
        replicas.flatMap((r) =>
          Array.from({ length: 70 }, () =>
            fetch(r.url, {
              method: "POST",
              headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
              body
            }).then(
              (a) => a.text().then(() => a.status),
              () => 0
            )
          )
        )
      )
      const stats = await Effect.runPromise(sim.stats)
      for (const r of replicas) r.proc.kill("SIGTERM")
      return {
        maxInFlight: labels.map((l) => stats.keys[l]!.maxInFlight),
        served: answers.filter((s) => s === 200).length,
        statuses: answers.reduce<Record<string, number>>((m, s) => ((m[s] = (m[s] ?? 0) + 1), m), {}),
        overspend: labels.reduce((s, l) => s + stats.keys[l]!.overspend, 0)
      }
    }
    const shared = await limitsFleet(2, "limits")
    const unshared = await limitsFleet(undefined, "unshared")
    await Effect.runPromise(
      Effect.forEach(labels, (l) => sim.updateKey(l, { limit: 1e6, usage: 0 }), { discard: true })
    )

    // Redis stopped mid-load, started again empty on the same port.
    const restartLoad = Promise.all(
      fleet.map((r) => load(r.url, `Bearer ${TOKEN}`, Math.ceil(PER_REPLICA / 2), CONNECTIONS))
    )
    await new Promise((r) => setTimeout(r, 800))
    stopRedis(redis.pid)
    await new Promise((r) => setTimeout(r, 500))
    redis = startRedis(redis.port)
    const restarted = await restartLoad
    const restartFailed = restarted.reduce((s, l) => s + l.errors, 0)

    // A replica SIGKILLed: its slices leave Redis within the lease TTL (the default, 3 s).
    await load(fleet[0]!.url, `Bearer ${TOKEN}`, 200, CONNECTIONS)
    const slicesOf = (replicaId: string) =>
      Effect.runPromise(
        Effect.forEach(labels, (l) =>
          Effect.map(
            Effect.all([CapacityLeases.inspectPermits(l), CapacityLeases.inspectCredit(l)]),
            ([p, c]) => [...p.slices, ...c.slices].filter((s) => s.replicaId === replicaId).length
          )
        ).pipe(
          Effect.map((n) => n.reduce((a, b) => a + b, 0)),
          // Just restarted, on a busy machine: the first connection may take a moment.
          Effect.retry({ times: 20, schedule: Schedule.spaced(100) }),
          Effect.provide(RedisStore.layer({ url: url(1) }))
        )
      )
    const before = await slicesOf("so-0")
    const killedAt = performance.now()
    fleet[0]!.proc.kill("SIGKILL")
    let left = before
    while (left > 0 && performance.now() - killedAt < 10_000) {
      await new Promise((r) => setTimeout(r, 50))
      left = await slicesOf("so-0")
    }
    const secondsUntilReturned = before === 0 || left > 0 ? NaN : (performance.now() - killedAt) / 1000

    const a = rounds.map((r) => r.alone!)
    const t = rounds.map((r) => r.three!)
    const f = rounds.map((r) => r.fleet!)
    return {
      upstreamLatencyMs: LATENCY_MS,
      connectionsPerReplica: CONNECTIONS,
      requestsPerReplica: PER_REPLICA,
      rounds: ROUNDS,
      rows,
      perReplicaThroughputRatio: median(f.map((x, i) => x.rpsPerReplica / a[i]!.rpsPerReplica)),
      vsThreeWithoutRedis: median(f.map((x, i) => x.rpsPerReplica / t[i]!.rpsPerReplica)),
      addedP50Ms: median(f.map((x, i) => x.p50Ms - a[i]!.p50Ms)),
      addedP50VsThreeWithoutRedisMs: median(f.map((x, i) => x.p50Ms - t[i]!.p50Ms)),
      limits: {
        cap: 4,
        maxInFlightPerKey: shared.maxInFlight,
        maxInFlightPerKeyWithoutRedis: unshared.maxInFlight,
        served: shared.served,
        statuses: shared.statuses,
        creditRequests: 150,
        overspendUsd: shared.overspend,
        overspendUsdWithoutRedis: unshared.overspend
      },
      redisRestart: { requests: Math.ceil(PER_REPLICA / 2) * 3, failed: restartFailed },
      sigkill: { ttlSeconds: 3, secondsUntilReturned }
    }
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL")
    await Effect.runPromise(Scope.close(scope, Exit.void))
    stopRedis(redis.pid)
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run().then(
    (r) => {
      console.log(JSON.stringify(r))
      process.exit(0)
    },
    (e: unknown) => {
      console.error(e)
      process.exit(1)
    }
  )
}
