/**
 * Gateway benchmark: requests per second, added p50/p99 latency and CPU per request at
 * `connections` concurrent connections, in one run, against
 *   (a) the simulator directly,
 *   (b) a minimal raw Node pass-through proxy (node:http server + keep-alive agent, round robin
 *       over the keys): the floor for any Node gateway,
 *   (c) the or-balancer gateway,
 *   (d) the same gateway with named clients configured (`OR_GATEWAY_BENCH_CLIENTS=1` in its child:
 *       three clients with budgets, rpm and model patterns; the load presents one client's token),
 *       so the cost of the per-client checks, reservation and settlement shows beside (c);
 *   (e) with `GATEWAY_REDIS=1`, (d) with a `redis` section too (a redis-server started by
 *       scripts/redis.sh): each client request's reservation and settlement are then a Lua script
 *       in Redis, so the round trip's cost shows beside (d).
 *
 * The simulator, the raw proxy and the gateway each run in their own child process (this file,
 * forked with a role); the load generator runs here, with a keep-alive `http.Agent`, bounded in
 * request count. Each child reports `process.cpuUsage()` over IPC, so besides wall-clock figures
 * the result holds each target's CPU µs per request: on a shared, loaded machine that is the
 * robust comparison (throughput and latency move with the neighbours' load; CPU per request
 * hardly does). The three targets are measured in interleaved rounds (each round the simulator
 * directly, the raw proxy and the gateway, the order rotating from round to round), so the
 * direct baseline sees the same machine as the proxies; each target's figures are over all its
 * rounds. Everything on 127.0.0.1. "Added" latency is a target's percentile minus the
 * simulator's own, measured directly in the same rounds.
 *
 * Two layouts, each with fresh children and its own rounds:
 *   - "shared": nothing pinned; the load generator, the simulator and the proxy compete for the
 *     machine's cores (on a 2-core machine a proxy's added latency is then largely CPU contention);
 *   - "pinned": with `taskset`, the load generator (this process) and the simulator share one
 *     CPU and the proxy under test gets another to itself, as a gateway has its own host. Skipped,
 *     with the reason in the result, without `taskset` or with fewer than two CPUs.
 *
 *   npx tsx examples/bench/gateway.ts [requests] [connections] [upstreamLatencyMs]
 *   GATEWAY_CPU_PROF=/tmp/prof npx tsx examples/bench/gateway.ts   # --cpu-prof the gateway child
 *   OR_GATEWAY_BENCH_LOG=info npx tsx examples/bench/gateway.ts     # the gateway logs every request
 *     (its config's `log: { requests: true, level }`; its stdout goes to /dev/null, or to the file
 *     OR_GATEWAY_BENCH_LOG_FILE names)
 *
 * The CPU-bound layout swings most with the neighbours' load (its throughput ratio moved from 0.46
 * to 1.08 between runs in one session), so it runs more rounds (8 by default), after one
 * throwaway round past the warm-up (without it, the first measured round read high for
 * whichever target warmed up first), and reports the median over rounds of the per-round ratios.
 *   GATEWAY_ROUNDS=n        rounds of the CPU-bound layout
 *   GATEWAY_ONLY_CPU=1      the CPU-bound layout only
 *   GATEWAY_B=/other/checkout/examples/bench/gateway.ts
 *                           a same-run A/B: a second gateway, from another checkout, measured in the
 *                           same interleaved rounds; prints the median of (B − A) µs/request
 *   GATEWAY_B_STRATEGY='[{"name":"round-robin"}]'
 *                           gateway B with another stack (the config's JSON list): the stack's own
 *                           cost in place, as B − A
 */
import { execFileSync, fork, type ChildProcess } from "node:child_process"
import * as diagnostics from "node:diagnostics_channel"
import * as fs from "node:fs"
import * as http from "node:http"
import type * as net from "node:net"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"

export interface TargetResult {
  readonly name:
    "simulator" | "raw-proxy" | "gateway" | "gateway-clients" | "gateway-clients-redis" | "gateway-b"
  readonly requests: number
  readonly errors: number
  readonly seconds: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** This target's percentile minus the simulator's (0 for the simulator itself). */
  readonly addedP50Ms: number
  readonly addedP99Ms: number
  /** CPU (user + system) the target's own process spent per request, in µs. */
  readonly cpuUsPerRequest: number
  /** CPU the simulator's process spent per request while this target was measured, in µs. */
  readonly upstreamCpuUsPerRequest: number
  /** Per round: this target's p50 minus the simulator's p50 in the same round (the spread between rounds). */
  readonly roundAddedP50Ms: ReadonlyArray<number>
  /** New TCP connections the target's process opened over the measured rounds (after the warm-up): steady load should reuse its keep-alive pool. */
  readonly newUpstreamSockets?: number
}

export type Layout = "shared" | "pinned" | "cpu-bound"

/** One layout's figures, from its own interleaved rounds. */
export interface LayoutResult {
  readonly layout: Layout
  /** The upstream's answer latency in this layout, ms (0 in the CPU-bound layout). */
  readonly upstreamLatencyMs?: number
  /** Which process ran on which CPU (absent when nothing was pinned). */
  readonly pinning?: { readonly loadGeneratorAndSimulatorCpu: number; readonly proxyCpu: number }
  readonly rounds: number
  readonly targets: ReadonlyArray<TargetResult>
  /** The gateway's throughput over the raw proxy's (target ≥ 0.7). */
  readonly gatewayVsRawProxy: number
  /** Target < 1 ms. */
  readonly gatewayAddedP50Ms: number
  readonly rawProxyAddedP50Ms: number
  readonly rawProxyCpuUsPerRequest: number
  readonly gatewayCpuUsPerRequest: number
  /** The same gateway with named clients configured (budgets, rpm, models), CPU µs per request. */
  readonly gatewayClientsCpuUsPerRequest: number
  /** With `GATEWAY_REDIS=1`: the same clients with their budgets in Redis, CPU µs per request. */
  readonly gatewayClientsRedisCpuUsPerRequest?: number
  /** The raw proxy's CPU per request over the gateway's: the load-independent throughput ratio. */
  readonly gatewayVsRawProxyCpu: number
  /** Medians over rounds of the per-round ratios (robust to one disturbed round). */
  readonly median: {
    readonly gatewayVsRawProxy: number
    /** The gateway's CPU per request over the raw proxy's (target ≤ 1.2 in the CPU-bound layout). */
    readonly gatewayCpuOverRawProxy: number
    /** With `GATEWAY_B`: (gateway B − gateway) CPU µs per request, and B's CPU over the raw proxy's. */
    readonly bMinusAUs?: number
    readonly bCpuOverRawProxy?: number
  }
}

export interface SkippedLayout {
  readonly layout: Layout
  readonly skipped: string
}

/**
 * The top-level figures are the shared layout's (as before there were layouts); `layouts` holds
 * both layouts in full, the pinned one possibly skipped.
 */
export interface GatewayBenchResult extends Omit<LayoutResult, "layout" | "pinning"> {
  readonly requests: number
  readonly connections: number
  readonly upstreamLatencyMs: number
  /** The gateway's strategy stack (the config's `strategy` list). */
  readonly strategy: unknown
  readonly layouts: ReadonlyArray<LayoutResult | SkippedLayout>
}

export interface GatewayBenchOptions {
  readonly requests?: number
  readonly connections?: number
  readonly upstreamLatencyMs?: number
  /** Interleaved rounds per layout (default 3: each target once in each position). */
  readonly rounds?: number
  /** Interleaved rounds of the CPU-bound layout (default 8, or GATEWAY_ROUNDS). */
  readonly cpuBoundRounds?: number
  /** Only the CPU-bound layout (or GATEWAY_ONLY_CPU=1). */
  readonly onlyCpuBound?: boolean
  /** Also run the CPU-bound layout (shared, upstream answering at once). Default true. */
  readonly cpuBound?: boolean
  /** Run the raw proxy and gateway children with `--cpu-prof`, into `raw-proxy/` and `gateway/` under this directory (the largest file is the main thread's). */
  readonly cpuProfileDir?: string
}

const BODY = JSON.stringify({
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello in one word." }],
  max_tokens: 8
})

export const TOKEN = "bench-gateway-token"
const CLIENT_TOKEN = "bench-client-token-b"
const CLIENTS = process.env.OR_GATEWAY_BENCH_CLIENTS === "1"

/**
 * The gateway's stack: the full one a production config runs (health › concurrency › credit threshold ›
 * weighted), every layer on the fast path. OR_GATEWAY_BENCH_STRATEGY (the config's JSON list) measures another.
 */
export const STRATEGY: unknown = JSON.parse(
  process.env.OR_GATEWAY_BENCH_STRATEGY ??
    JSON.stringify([
      { name: "health-aware" },
      { name: "concurrency-limited", defaultMax: 64 },
      { name: "threshold", threshold: 0.01 },
      { name: "weighted" }
    ])
)
const LABELS = ["bench-1", "bench-2", "bench-3"]

export const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

// --- IPC between the parent and a target child ------------------------------------------------

type ToChild = { readonly type: "cpu" } | { readonly type: "stop" }
type FromChild =
  | { readonly type: "ready"; readonly url: string; readonly secrets?: ReadonlyArray<string> }
  | { readonly type: "cpu"; readonly micros: number; readonly sockets: number }
  | { readonly type: "error"; readonly message: string }

export interface Child {
  readonly process: ChildProcess
  readonly url: string
  readonly secrets: ReadonlyArray<string>
  /** The child's total CPU (user + system) so far, in µs, and the client sockets it has connected. */
  readonly cpu: () => Promise<{ readonly micros: number; readonly sockets: number }>
  readonly stop: () => Promise<void>
}

const here = fileURLToPath(import.meta.url)

/** The gateway child's log level when it logs every request (OR_GATEWAY_BENCH_LOG), else off. */
const LOG = process.env.OR_GATEWAY_BENCH_LOG as "debug" | "info" | "warn" | "error" | undefined
const logOut = () =>
  process.env.OR_GATEWAY_BENCH_LOG_FILE === undefined
    ? ("ignore" as const)
    : fs.openSync(process.env.OR_GATEWAY_BENCH_LOG_FILE, "a")

export const spawnChild = (
  role: string,
  env: Record<string, string>,
  execArgv: Array<string> = [],
  // Another checkout's copy of this file (a same-run A/B), run from its own directory.
  file: string = here
) =>
  new Promise<Child>((resolve, reject) => {
    const child = fork(file, [], {
      cwd: path.join(path.dirname(file), ".."),
      execArgv: [...execArgv, "--import", "tsx"],
      env: { ...process.env, OR_GATEWAY_BENCH_ROLE: role, ...env },
      stdio: [
        "ignore",
        role === "gateway" && (LOG ?? env.OR_GATEWAY_BENCH_LOG) !== undefined ? logOut() : "inherit",
        "inherit",
        "ipc"
      ]
    })
    // Answers come back in order: a FIFO of waiters.
    const cpuWaiters: Array<(usage: { readonly micros: number; readonly sockets: number }) => void> = []
    child.on("message", (m: FromChild) => {
      if (m.type === "ready") {
        resolve({
          process: child,
          url: m.url,
          secrets: m.secrets ?? [],
          cpu: () =>
            new Promise((r) => {
              cpuWaiters.push(r)
              child.send({ type: "cpu" } satisfies ToChild)
            }),
          stop: () =>
            new Promise((r) => {
              if (child.exitCode !== null) return r()
              child.once("exit", () => r())
              child.send({ type: "stop" } satisfies ToChild)
            })
        })
      } else if (m.type === "cpu") {
        cpuWaiters.shift()?.({ micros: m.micros, sockets: m.sockets })
      } else reject(new Error(`${role}: ${m.message}`))
    })
    child.once("exit", (code) => reject(new Error(`${role} exited with ${code}`)))
  })

/** Client sockets this process has connected (a proxy's connections to its upstream). */
let connectedSockets = 0
diagnostics.subscribe("net.client.socket", (message) => {
  ;(message as { socket: net.Socket }).socket.once("connect", () => connectedSockets++)
})

/** In a child: answer CPU queries and stop requests from the parent. */
const serveIpc = (stop: () => Promise<void>) => {
  process.on("message", (m: ToChild) => {
    if (m.type === "cpu") {
      const u = process.cpuUsage()
      process.send!({ type: "cpu", micros: u.user + u.system, sockets: connectedSockets } satisfies FromChild)
    } else {
      // Give a CPU profile (if any) the normal exit it needs to be written.
      stop().then(
        () => process.exit(0),
        () => process.exit(1)
      )
    }
  })
}

// --- The children -------------------------------------------------------------------------------

const runSimulator = async () => {
  const [Simulator, Effect, Scope, Exit, Redacted] = await Promise.all([
    import("@or-balancer/simulator/Simulator"),
    import("effect/Effect"),
    import("effect/Scope"),
    import("effect/Exit"),
    import("effect/Redacted")
  ])
  const scope = Effect.runSync(Scope.make())
  const sim = await Effect.runPromise(
    Simulator.make({
      seed: 1,
      keys: LABELS.map((label, i) => ({ label, account: "bench", secret: Simulator.simulatedSecret(1, i) })),
      latency: { kind: "fixed", ms: Number(process.env.OR_GATEWAY_BENCH_LATENCY ?? 50) }
    }).pipe(Scope.extend(scope))
  )
  serveIpc(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  process.send!({
    type: "ready",
    url: sim.baseUrl,
    secrets: sim.keys.map((k) => Redacted.value(k.secret))
  } satisfies FromChild)
}

/** The floor: node:http in, keep-alive agent out, round robin over the keys, bodies piped. */
const runRawProxy = async () => {
  const base = new URL(process.env.OR_GATEWAY_BENCH_UPSTREAM!)
  const secrets = JSON.parse(process.env.OR_GATEWAY_BENCH_SECRETS!) as Array<string>
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  let cursor = 0
  const server = http.createServer((req, res) => {
    const secret = secrets[cursor++ % secrets.length]!
    const up = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: req.method,
        path: `${base.pathname}/chat/completions`,
        headers: {
          authorization: `Bearer ${secret}`,
          "content-type": "application/json",
          ...(req.headers["content-length"] === undefined
            ? {}
            : { "content-length": req.headers["content-length"] })
        }
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.pipe(res)
      }
    )
    up.on("error", () => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  serveIpc(
    () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(() => r())
      })
  )
  const port = (server.address() as AddressInfo).port
  process.send!({
    type: "ready",
    url: `http://127.0.0.1:${port}/api/v1/chat/completions`
  } satisfies FromChild)
}

const runGateway = async () => {
  const [Gateway, GatewayConfig, Tracing, ConfigProvider, Effect, Layer, Scope, Exit] = await Promise.all([
    import("@or-balancer/gateway/Gateway"),
    import("@or-balancer/gateway/GatewayConfig"),
    import("@or-balancer/gateway/Tracing"),
    import("effect/ConfigProvider"),
    import("effect/Effect"),
    import("effect/Layer"),
    import("effect/Scope"),
    import("effect/Exit")
  ])
  const secrets = JSON.parse(process.env.OR_GATEWAY_BENCH_SECRETS!) as Array<string>
  const env = new Map<string, string>([["BENCH_TOKEN", TOKEN]])
  LABELS.forEach((_, i) => env.set(`BENCH_KEY_${i}`, secrets[i]!))
  ;["a", "b", "c"].forEach((c) => env.set(`BENCH_CLIENT_${c.toUpperCase()}`, `bench-client-token-${c}`))
  // Budgets no load here exhausts, an rpm it never reaches: every check runs, none refuses.
  const clients = ["a", "b", "c"].map((c) => ({
    id: `client-${c}`,
    tokenEnv: `BENCH_CLIENT_${c.toUpperCase()}`,
    budget: { usd: 1e6, period: "daily", reserveUsd: 0.01 },
    rpm: 10_000_000,
    models: ["anthropic/*", "openai/*"]
  }))
  const config = await Effect.runPromise(
    GatewayConfig.decode({
      listen: { host: "127.0.0.1", port: 0 },
      baseUrl: process.env.OR_GATEWAY_BENCH_UPSTREAM!,
      tokens: ["BENCH_TOKEN"],
      ...(CLIENTS ? { clients } : {}),
      ...(process.env.OR_GATEWAY_BENCH_REDIS === undefined
        ? {}
        : { redis: { url: process.env.OR_GATEWAY_BENCH_REDIS, replicaId: "bench", replicas: 1 } }),
      keys: LABELS.map((id, i) => ({ id, secretEnv: `BENCH_KEY_${i}` })),
      strategy: STRATEGY,
      ...(LOG === undefined ? {} : { log: { requests: true, level: LOG } })
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
  )
  const scope = Effect.runSync(Scope.make())
  // As `or-balancer serve` runs it.
  await Effect.runPromise(Gateway.tuneGc)
  // Traces when the OTEL_* variables ask for them, as `or-balancer serve` (bench/observability.ts):
  // the tracer layer built into the gateway's scope, in the fiber that makes the gateway.
  const gateway = await Effect.runPromise(
    Effect.zipRight(Layer.buildWithScope(Tracing.layerFromEnv, scope), Gateway.make(config)).pipe(
      Scope.extend(scope)
    )
  )
  serveIpc(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  process.send!({ type: "ready", url: `${gateway.url}/v1/chat/completions` } satisfies FromChild)
}

// --- Load --------------------------------------------------------------------------------------

export interface Load {
  readonly latencies: Array<number>
  readonly errors: number
  readonly seconds: number
}

/** `requests` POSTs over `connections` keep-alive connections, each connection one request at a time. */
export const load = (url: string, auth: string, requests: number, connections: number): Promise<Load> =>
  new Promise((resolve) => {
    const target = new URL(url)
    const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
    const headers: Record<string, string | number> = {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(BODY)
    }
    if (auth !== "") headers.authorization = auth
    const latencies: Array<number> = []
    let errors = 0
    let started = 0
    let finished = 0
    const t0 = performance.now()
    const one = (): void => {
      if (started >= requests) return
      started++
      const t = performance.now()
      const req = http.request(
        { agent, host: target.hostname, port: target.port, path: target.pathname, method: "POST", headers },
        (res) => {
          res.on("data", () => undefined)
          res.on("end", () => {
            if (res.statusCode === 200) latencies.push(performance.now() - t)
            else errors++
            next()
          })
        }
      )
      req.on("error", () => {
        errors++
        next()
      })
      req.end(BODY)
    }
    const next = () => {
      finished++
      if (finished === requests) {
        agent.destroy()
        resolve({ latencies, errors, seconds: (performance.now() - t0) / 1000 })
      } else one()
    }
    for (let i = 0; i < connections; i++) one()
  })

interface Tally {
  latencies: Array<number>
  requests: number
  errors: number
  seconds: number
  cpu: number
  upstreamCpu: number
  sockets: number
  /** Each round's p50, CPU µs per request and requests per second, in round order. */
  roundP50s: Array<number>
  roundCpu: Array<number>
  roundRps: Array<number>
}

const tally = (): Tally => ({
  latencies: [],
  requests: 0,
  errors: 0,
  seconds: 0,
  cpu: 0,
  upstreamCpu: 0,
  sockets: 0,
  roundP50s: [],
  roundCpu: [],
  roundRps: []
})

const median = (xs: ReadonlyArray<number>) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5
  )
const perRound = (a: ReadonlyArray<number>, b: ReadonlyArray<number>, f: (x: number, y: number) => number) =>
  median(a.map((x, i) => f(x, b[i]!)))

/** One measured run against `target`, counting its own and the simulator's CPU over the run. */
const measureInto = async (
  t: Tally,
  target: Child,
  sim: Child,
  auth: string,
  requests: number,
  connections: number
) => {
  const [c0, s0] = await Promise.all([target.cpu(), sim.cpu()])
  const r = await load(target.url, auth, requests, connections)
  const [c1, s1] = await Promise.all([target.cpu(), sim.cpu()])
  t.latencies.push(...r.latencies)
  t.roundP50s.push(
    quantile(
      [...r.latencies].sort((a, b) => a - b),
      0.5
    )
  )
  t.requests += requests
  t.errors += r.errors
  t.seconds += r.seconds
  t.cpu += c1.micros - c0.micros
  t.upstreamCpu += s1.micros - s0.micros
  t.sockets += c1.sockets - c0.sockets
  t.roundCpu.push((c1.micros - c0.micros) / requests)
  t.roundRps.push(requests / r.seconds)
}

const summarize = (name: TargetResult["name"], t: Tally) => {
  const sorted = t.latencies.sort((a, b) => a - b)
  return {
    name,
    requests: t.requests,
    errors: t.errors,
    seconds: t.seconds,
    rps: t.requests / t.seconds,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    cpuUsPerRequest: t.cpu / t.requests,
    upstreamCpuUsPerRequest: t.upstreamCpu / t.requests,
    newUpstreamSockets: t.sockets
  }
}

// --- Pinning (the "pinned" layout) -------------------------------------------------------------

const taskset = (args: ReadonlyArray<string>) =>
  execFileSync("taskset", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

const message = (e: unknown) =>
  (e instanceof Error ? e.message : String(e)).split("\n").filter((l) => l.trim() !== "")[0] ??
  "unknown error"

/** "0,2-3" → [0, 2, 3]; undefined for a form this does not read (such as a stride, "0-7:2"). */
const parseCpuList = (list: string): Array<number> | undefined => {
  const cpus: Array<number> = []
  for (const part of list.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    if (m === null) return undefined
    for (let c = Number(m[1]); c <= Number(m[2] ?? m[1]); c++) cpus.push(c)
  }
  return cpus
}

interface Pinning {
  /** This process's affinity list before pinning, to restore afterwards. */
  readonly original: string
  readonly loadGeneratorAndSimulatorCpu: number
  readonly proxyCpu: number
}

/** The two CPUs to pin to (the first two this process may use), or why the layout cannot run here. */
const planPinning = (): Pinning | { readonly skipped: string } => {
  const parallelism = os.availableParallelism()
  if (parallelism < 2) return { skipped: `needs two CPUs; os.availableParallelism() is ${parallelism}` }
  let original: string
  try {
    // "pid 123's current affinity list: 0,1"
    const out = taskset(["-c", "-p", String(process.pid)])
    original = out.slice(out.lastIndexOf(":") + 1).trim()
  } catch (e) {
    return { skipped: `taskset is not available (${message(e)})` }
  }
  const cpus = parseCpuList(original)
  if (cpus === undefined) return { skipped: `cannot read taskset's affinity list "${original}"` }
  if (cpus.length < 2) return { skipped: `needs two CPUs; this process may run on ${original} only` }
  return { original, loadGeneratorAndSimulatorCpu: cpus[0]!, proxyCpu: cpus[1]! }
}

/** Pin every thread of `pid` (-a) to `cpus`. */
const pin = (pid: number | undefined, cpus: string) => {
  if (pid === undefined) throw new Error("a child has no pid")
  taskset(["-a", "-p", "-c", cpus, String(pid)])
}

// --- One layout --------------------------------------------------------------------------------

interface LayoutSettings {
  readonly requests: number
  readonly connections: number
  readonly upstreamLatencyMs: number
  readonly rounds: number
  readonly cpuProfileDir: string | undefined
  /** Another checkout's bench file: its gateway measured as a 4th target (`GATEWAY_B`). */
  readonly gatewayB: string | undefined
  /** A redis-server for the clients-on-Redis target (`GATEWAY_REDIS=1`). */
  readonly redisUrl: string | undefined
}

/** Fresh children, pinned if asked, warmed up, then `rounds` interleaved rounds of the three targets. */
const runLayout = async (
  layout: Layout,
  settings: LayoutSettings,
  pinning: Pinning | undefined
): Promise<LayoutResult | SkippedLayout> => {
  const { connections, requests, rounds, upstreamLatencyMs, cpuProfileDir } = settings
  const children: Array<Child> = []
  try {
    const sim = await spawnChild("simulator", { OR_GATEWAY_BENCH_LATENCY: String(upstreamLatencyMs) })
    children.push(sim)
    const upstream = {
      OR_GATEWAY_BENCH_UPSTREAM: sim.url,
      OR_GATEWAY_BENCH_SECRETS: JSON.stringify(sim.secrets)
    }
    const prof = (name: string) =>
      cpuProfileDir === undefined
        ? []
        : ["--cpu-prof", `--cpu-prof-dir=${path.join(cpuProfileDir, layout, name)}`]
    const [raw, gateway, gatewayClients, gatewayB, gatewayRedis] = await Promise.all([
      spawnChild("raw-proxy", upstream, prof("raw-proxy")),
      spawnChild("gateway", { ...upstream, OR_GATEWAY_BENCH_CLIENTS: "0" }, prof("gateway")),
      spawnChild("gateway", { ...upstream, OR_GATEWAY_BENCH_CLIENTS: "1" }, prof("gateway-clients")),
      settings.gatewayB === undefined
        ? undefined
        : spawnChild(
            "gateway",
            process.env.GATEWAY_B_STRATEGY === undefined
              ? upstream
              : { ...upstream, OR_GATEWAY_BENCH_STRATEGY: process.env.GATEWAY_B_STRATEGY },
            prof("gateway-b"),
            settings.gatewayB
          ),
      settings.redisUrl === undefined
        ? undefined
        : spawnChild(
            "gateway",
            { ...upstream, OR_GATEWAY_BENCH_CLIENTS: "1", OR_GATEWAY_BENCH_REDIS: settings.redisUrl },
            prof("gateway-clients-redis")
          )
    ])
    children.push(raw, gateway, gatewayClients)
    if (gatewayB !== undefined) children.push(gatewayB)
    if (gatewayRedis !== undefined) children.push(gatewayRedis)
    if (pinning !== undefined) {
      try {
        const shared = String(pinning.loadGeneratorAndSimulatorCpu)
        const own = String(pinning.proxyCpu)
        pin(process.pid, shared)
        pin(sim.process.pid, shared)
        pin(raw.process.pid, own)
        pin(gateway.process.pid, own)
        pin(gatewayClients.process.pid, own)
        if (gatewayB !== undefined) pin(gatewayB.process.pid, own)
        if (gatewayRedis !== undefined) pin(gatewayRedis.process.pid, own)
      } catch (e) {
        return { layout, skipped: `pinning with taskset failed: ${message(e)}` }
      }
    }
    const directUrl = `${sim.url}/chat/completions`
    const directAuth = `Bearer ${sim.secrets[0]}`
    const simChild: Child = { ...sim, url: directUrl }
    const gwAuth = `Bearer ${TOKEN}`
    const clientAuth = `Bearer ${CLIENT_TOKEN}`
    // Warm-up: connections, JIT.
    const warm = Math.max(connections * 40, 2000)
    await load(directUrl, directAuth, warm, connections)
    await load(raw.url, "", warm, connections)
    await load(gateway.url, gwAuth, warm, connections)
    await load(gatewayClients.url, clientAuth, warm, connections)
    if (gatewayB !== undefined) await load(gatewayB.url, gwAuth, warm, connections)
    if (gatewayRedis !== undefined) await load(gatewayRedis.url, clientAuth, warm, connections)

    const direct = tally()
    const rawT = tally()
    const gwT = tally()
    const gwcT = tally()
    const gwB = tally()
    const gwR = tally()
    const runs: ReadonlyArray<readonly [Tally, Child, string]> = [
      [direct, simChild, directAuth],
      [rawT, raw, ""],
      [gwT, gateway, gwAuth],
      [gwcT, gatewayClients, clientAuth],
      ...(gatewayB === undefined ? [] : [[gwB, gatewayB, gwAuth] as const]),
      ...(gatewayRedis === undefined ? [] : [[gwR, gatewayRedis, clientAuth] as const])
    ]
    const per = Math.ceil(requests / rounds)
    // One throwaway round: the first measured round otherwise reads high for whichever target
    // warmed up first.
    for (const [, target, auth] of runs) await load(target.url, auth, per, connections)
    for (let i = 0; i < rounds; i++) {
      // Rotate the order so no target always runs first, or right after another.
      for (let j = 0; j < runs.length; j++) {
        const [t, target, auth] = runs[(i + j) % runs.length]!
        await measureInto(t, target, sim, auth, per, connections)
      }
    }
    const d = summarize("simulator", direct)
    const r = summarize("raw-proxy", rawT)
    const g = summarize("gateway", gwT)
    const gc = summarize("gateway-clients", gwcT)
    const added = (t: typeof d, tl: Tally): TargetResult => ({
      ...t,
      addedP50Ms: t.name === "simulator" ? 0 : t.p50Ms - d.p50Ms,
      addedP99Ms: t.name === "simulator" ? 0 : t.p99Ms - d.p99Ms,
      roundAddedP50Ms: tl.roundP50s.map((p, i) => (t.name === "simulator" ? 0 : p - direct.roundP50s[i]!))
    })
    return {
      layout,
      upstreamLatencyMs,
      ...(pinning === undefined
        ? {}
        : {
            pinning: {
              loadGeneratorAndSimulatorCpu: pinning.loadGeneratorAndSimulatorCpu,
              proxyCpu: pinning.proxyCpu
            }
          }),
      rounds,
      targets: [
        added(d, direct),
        added(r, rawT),
        added(g, gwT),
        added(gc, gwcT),
        ...(gatewayB === undefined ? [] : [added(summarize("gateway-b", gwB), gwB)]),
        ...(gatewayRedis === undefined ? [] : [added(summarize("gateway-clients-redis", gwR), gwR)])
      ],
      gatewayVsRawProxy: g.rps / r.rps,
      gatewayAddedP50Ms: g.p50Ms - d.p50Ms,
      rawProxyAddedP50Ms: r.p50Ms - d.p50Ms,
      rawProxyCpuUsPerRequest: r.cpuUsPerRequest,
      gatewayCpuUsPerRequest: g.cpuUsPerRequest,
      gatewayClientsCpuUsPerRequest: gc.cpuUsPerRequest,
      ...(gatewayRedis === undefined
        ? {}
        : { gatewayClientsRedisCpuUsPerRequest: summarize("gateway-clients-redis", gwR).cpuUsPerRequest }),
      gatewayVsRawProxyCpu: r.cpuUsPerRequest / g.cpuUsPerRequest,
      median: {
        gatewayVsRawProxy: perRound(gwT.roundRps, rawT.roundRps, (x, y) => x / y),
        gatewayCpuOverRawProxy: perRound(gwT.roundCpu, rawT.roundCpu, (x, y) => x / y),
        ...(gatewayB === undefined
          ? {}
          : {
              bMinusAUs: perRound(gwB.roundCpu, gwT.roundCpu, (x, y) => x - y),
              bCpuOverRawProxy: perRound(gwB.roundCpu, rawT.roundCpu, (x, y) => x / y)
            })
      }
    }
  } finally {
    try {
      await Promise.all(children.map((c) => c.stop()))
    } finally {
      // The caller (bench/run.ts) goes on in this process: give it all its CPUs back.
      if (pinning !== undefined) taskset(["-a", "-p", "-c", pinning.original, String(process.pid)])
    }
  }
}

export const isSkipped = (l: LayoutResult | SkippedLayout): l is SkippedLayout => "skipped" in l

export const runGatewayBench = async (options: GatewayBenchOptions = {}): Promise<GatewayBenchResult> => {
  let settings: LayoutSettings = {
    requests: options.requests ?? 5000,
    connections: options.connections ?? 50,
    upstreamLatencyMs: options.upstreamLatencyMs ?? 50,
    rounds: Math.max(1, options.rounds ?? 3),
    cpuProfileDir: options.cpuProfileDir ?? process.env.GATEWAY_CPU_PROF,
    gatewayB: process.env.GATEWAY_B,
    redisUrl: undefined
  }
  // GATEWAY_REDIS=1: a throwaway redis-server for the clients-on-Redis target, stopped at the end.
  let redisPid: string | undefined
  if (process.env.GATEWAY_REDIS === "1") {
    const [port, pid] = execFileSync(path.join(path.dirname(here), "../../scripts/redis.sh"), ["start"], {
      encoding: "utf8"
    })
      .trim()
      .split(" ")
    redisPid = pid
    settings = { ...settings, redisUrl: `redis://127.0.0.1:${port}/0` }
  }
  try {
    return await runLayouts(options, settings)
  } finally {
    if (redisPid !== undefined)
      execFileSync(path.join(path.dirname(here), "../../scripts/redis.sh"), ["stop", redisPid])
  }
}

const runLayouts = async (
  options: GatewayBenchOptions,
  settings: LayoutSettings
): Promise<GatewayBenchResult> => {
  // The CPU-bound case: an upstream that answers at once, so the proxies' own CPU is the bottleneck.
  const cpuBoundLayout = () =>
    runLayout(
      "cpu-bound",
      {
        ...settings,
        upstreamLatencyMs: 0,
        rounds: Math.max(1, options.cpuBoundRounds ?? Number(process.env.GATEWAY_ROUNDS ?? 8))
      },
      undefined
    )
  if (options.onlyCpuBound ?? process.env.GATEWAY_ONLY_CPU === "1") {
    const only = await cpuBoundLayout()
    if (isSkipped(only)) throw new Error(only.skipped)
    const { layout: _layout, pinning: _pinning, ...top } = only
    return {
      requests: settings.requests,
      connections: settings.connections,
      upstreamLatencyMs: 0,
      strategy: STRATEGY,
      ...top,
      layouts: [only]
    }
  }
  const shared = await runLayout("shared", settings, undefined)
  // Never skipped: only pinning skips a layout.
  if (isSkipped(shared)) throw new Error(shared.skipped)
  const plan = planPinning()
  const pinned: LayoutResult | SkippedLayout =
    "skipped" in plan
      ? { layout: "pinned", skipped: plan.skipped }
      : await runLayout("pinned", settings, plan)
  const cpuBound: Array<LayoutResult | SkippedLayout> =
    options.cpuBound === false ? [] : [await cpuBoundLayout()]
  const { layout: _layout, pinning: _pinning, ...top } = shared
  return {
    requests: settings.requests,
    connections: settings.connections,
    upstreamLatencyMs: settings.upstreamLatencyMs,
    strategy: STRATEGY,
    ...top,
    layouts: [shared, pinned, ...cpuBound]
  }
}

const LAYOUT_TEXT: Record<Layout, string> = {
  shared: "nothing pinned: the load generator, the simulator and the proxy compete for the cores",
  pinned: "load generator and simulator on one CPU, the proxy under test on another of its own",
  "cpu-bound": "nothing pinned, upstream answering at once: the proxies' own CPU is the bottleneck"
}

const printLayout = (l: LayoutResult | SkippedLayout) => {
  if (isSkipped(l)) {
    console.log(`  layout ${l.layout}: skipped (${l.skipped})`)
    return
  }
  const where =
    l.pinning === undefined
      ? ""
      : ` (CPU ${l.pinning.loadGeneratorAndSimulatorCpu}: load generator + simulator; CPU ${l.pinning.proxyCpu}: proxy)`
  console.log(`  layout ${l.layout} (${l.rounds} rounds): ${LAYOUT_TEXT[l.layout]}${where}`)
  for (const t of l.targets) {
    const spread =
      t.name === "simulator" ? "" : `  by round ${t.roundAddedP50Ms.map((x) => x.toFixed(2)).join("/")}`
    console.log(
      `    ${t.name.padEnd(10)} ${t.rps.toFixed(0).padStart(6)} req/s  p50 ${t.p50Ms.toFixed(2)} ms  p99 ${t.p99Ms.toFixed(2)} ms  added p50 ${t.addedP50Ms.toFixed(2)} ms${spread}  added p99 ${t.addedP99Ms.toFixed(2)} ms  cpu ${t.cpuUsPerRequest.toFixed(0)} µs/req (simulator ${t.upstreamCpuUsPerRequest.toFixed(0)})  errors ${t.errors}  new upstream sockets ${t.newUpstreamSockets ?? 0}`
    )
  }
  console.log(
    `    gateway CPU per request: ${l.gatewayCpuUsPerRequest.toFixed(0)} µs without clients, ${l.gatewayClientsCpuUsPerRequest.toFixed(0)} µs with named clients configured` +
      (l.gatewayClientsRedisCpuUsPerRequest === undefined
        ? ""
        : `, ${l.gatewayClientsRedisCpuUsPerRequest.toFixed(0)} µs with their budgets on Redis`)
  )
  console.log(
    `    gateway / raw proxy: throughput ${l.gatewayVsRawProxy.toFixed(2)}, by CPU per request ${l.gatewayVsRawProxyCpu.toFixed(2)}; added p50 gateway ${l.gatewayAddedP50Ms.toFixed(2)} ms, raw proxy ${l.rawProxyAddedP50Ms.toFixed(2)} ms`
  )
  const m = l.median
  console.log(
    `    medians over rounds: gateway / raw proxy throughput ${m.gatewayVsRawProxy.toFixed(2)}, gateway CPU / raw proxy CPU ${m.gatewayCpuOverRawProxy.toFixed(2)}` +
      (m.bMinusAUs === undefined
        ? ""
        : `; A/B: gateway-b − gateway ${m.bMinusAUs.toFixed(1)} µs/req, gateway-b CPU / raw proxy CPU ${m.bCpuOverRawProxy!.toFixed(2)}`)
  )
}

const role = process.env.OR_GATEWAY_BENCH_ROLE
if (role !== undefined) {
  const start = role === "simulator" ? runSimulator : role === "raw-proxy" ? runRawProxy : runGateway
  if (process.env.GATEWAY_BENCH_VERBOSE !== undefined) console.error(`[bench] ${role}: pid ${process.pid}`)
  start().catch((e: unknown) => {
    console.error(e)
    process.send?.({ type: "error", message: e instanceof Error ? e.message : String(e) } satisfies FromChild)
    process.exit(1)
  })
} else if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === here) {
  const [requests, connections, latency] = process.argv.slice(2).map(Number)
  runGatewayBench({
    ...(requests ? { requests } : {}),
    ...(connections ? { connections } : {}),
    ...(latency !== undefined && !Number.isNaN(latency) ? { upstreamLatencyMs: latency } : {})
  }).then(
    (r) => {
      console.log(
        `gateway bench: ${r.requests} requests per target and layout, ${r.connections} connections, upstream ${r.upstreamLatencyMs} ms, ${r.rounds} interleaved rounds, each target in its own process; gateway strategy ${JSON.stringify(r.strategy)}; request log ${LOG ?? "off"}`
      )
      r.layouts.forEach(printLayout)
    },
    (e) => {
      console.error(e)
      process.exitCode = 1
    }
  )
}
