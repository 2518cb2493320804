/**
 * Gateway benchmark: requests per second and added p50/p99 latency at `connections` concurrent
 * connections, in one run, against
 *   (a) the simulator directly,
 *   (b) a minimal raw Node pass-through proxy (node:http server + keep-alive agent, round robin
 *       over the keys): the floor for any Node gateway,
 *   (c) the or-balancer gateway.
 * Everything on 127.0.0.1; the load is generated in-process with a keep-alive `http.Agent`, bounded
 * in request count. "Added" latency is a target's percentile minus the simulator's own.
 *
 *   npx tsx examples/bench/gateway.ts [requests] [connections] [upstreamLatencyMs]
 */
import * as Gateway from "@or-balancer/http/Gateway"
import * as GatewayConfig from "@or-balancer/http/GatewayConfig"
import * as Simulator from "@or-balancer/http/Simulator"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { performance } from "node:perf_hooks"

export interface TargetResult {
  readonly name: "simulator" | "raw-proxy" | "gateway"
  readonly requests: number
  readonly errors: number
  readonly seconds: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** This target's percentile minus the simulator's (0 for the simulator itself). */
  readonly addedP50Ms: number
  readonly addedP99Ms: number
}

export interface GatewayBenchResult {
  readonly requests: number
  readonly connections: number
  readonly upstreamLatencyMs: number
  readonly targets: ReadonlyArray<TargetResult>
  /** The gateway's throughput over the raw proxy's (target ≥ 0.7). */
  readonly gatewayVsRawProxy: number
  /** Target < 1 ms. */
  readonly gatewayAddedP50Ms: number
}

const BODY = JSON.stringify({
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello in one word." }],
  max_tokens: 8
})

const TOKEN = "bench-gateway-token"

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

interface Load {
  readonly latencies: Array<number>
  readonly errors: number
  readonly seconds: number
}

/** `requests` POSTs over `connections` keep-alive connections, each connection one request at a time. */
const load = (url: string, auth: string, requests: number, connections: number): Promise<Load> =>
  new Promise((resolve) => {
    const target = new URL(url)
    const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
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
        {
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: "POST",
          headers: {
            authorization: auth,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(BODY)
          }
        },
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

/** The floor: node:http in, keep-alive agent out, round robin over the keys, bodies piped. */
const rawProxy = (upstream: string, secrets: ReadonlyArray<string>): Promise<http.Server> =>
  new Promise((resolve) => {
    const base = new URL(upstream)
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
    server.listen(0, "127.0.0.1", () => resolve(server))
  })

const measure = async (
  name: TargetResult["name"],
  url: string,
  auth: string,
  requests: number,
  connections: number
): Promise<Omit<TargetResult, "addedP50Ms" | "addedP99Ms">> => {
  // Warm-up: connections, JIT.
  await load(url, auth, Math.min(requests, Math.max(connections * 4, 200)), connections)
  const r = await load(url, auth, requests, connections)
  const sorted = r.latencies.sort((a, b) => a - b)
  return {
    name,
    requests,
    errors: r.errors,
    seconds: r.seconds,
    rps: requests / r.seconds,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99)
  }
}

export const runGatewayBench = async (
  options: { requests?: number; connections?: number; upstreamLatencyMs?: number } = {}
): Promise<GatewayBenchResult> => {
  const requests = options.requests ?? 5000
  const connections = options.connections ?? 50
  const upstreamLatencyMs = options.upstreamLatencyMs ?? 50
  const scope = Effect.runSync(Scope.make())
  let proxy: http.Server | undefined
  try {
    const labels = ["bench-1", "bench-2", "bench-3"]
    const sim = await Effect.runPromise(
      Simulator.make({
        seed: 1,
        keys: labels.map((label, i) => ({
          label,
          account: "bench",
          secret: Simulator.simulatedSecret(1, i)
        })),
        latency: { kind: "fixed", ms: upstreamLatencyMs }
      }).pipe(Scope.extend(scope))
    )
    const secrets = sim.keys.map((k) => Redacted.value(k.secret))
    const env = new Map<string, string>([["BENCH_TOKEN", TOKEN]])
    labels.forEach((_, i) => env.set(`BENCH_KEY_${i}`, secrets[i]!))
    const config = await Effect.runPromise(
      GatewayConfig.decode({
        listen: { host: "127.0.0.1", port: 0 },
        baseUrl: sim.baseUrl,
        tokens: ["BENCH_TOKEN"],
        keys: labels.map((id, i) => ({ id, secretEnv: `BENCH_KEY_${i}` })),
        strategy: [{ name: "round-robin" }]
      }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
    )
    const gateway = await Effect.runPromise(Gateway.make(config).pipe(Scope.extend(scope)))
    proxy = await rawProxy(sim.baseUrl, secrets)
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/api/v1/chat/completions`

    const direct = await measure(
      "simulator",
      `${sim.baseUrl}/chat/completions`,
      `Bearer ${secrets[0]}`,
      requests,
      connections
    )
    const raw = await measure("raw-proxy", proxyUrl, "", requests, connections)
    const gw = await measure(
      "gateway",
      `${gateway.url}/v1/chat/completions`,
      `Bearer ${TOKEN}`,
      requests,
      connections
    )
    const added = (t: typeof direct): TargetResult => ({
      ...t,
      addedP50Ms: t.name === "simulator" ? 0 : t.p50Ms - direct.p50Ms,
      addedP99Ms: t.name === "simulator" ? 0 : t.p99Ms - direct.p99Ms
    })
    const targets = [added(direct), added(raw), added(gw)]
    return {
      requests,
      connections,
      upstreamLatencyMs,
      targets,
      gatewayVsRawProxy: gw.rps / raw.rps,
      gatewayAddedP50Ms: gw.p50Ms - direct.p50Ms
    }
  } finally {
    if (proxy !== undefined) {
      proxy.closeAllConnections()
      proxy.close()
    }
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/"))
if (isMain) {
  const [requests, connections, latency] = process.argv.slice(2).map(Number)
  runGatewayBench({
    ...(requests ? { requests } : {}),
    ...(connections ? { connections } : {}),
    ...(latency !== undefined && !Number.isNaN(latency) ? { upstreamLatencyMs: latency } : {})
  }).then(
    (r) => {
      console.log(
        `gateway bench: ${r.requests} requests, ${r.connections} connections, upstream ${r.upstreamLatencyMs} ms`
      )
      for (const t of r.targets) {
        console.log(
          `  ${t.name.padEnd(10)} ${t.rps.toFixed(0).padStart(6)} req/s  p50 ${t.p50Ms.toFixed(2)} ms  p99 ${t.p99Ms.toFixed(2)} ms  added p50 ${t.addedP50Ms.toFixed(2)} ms  added p99 ${t.addedP99Ms.toFixed(2)} ms  errors ${t.errors}`
        )
      }
      console.log(
        `  gateway / raw proxy throughput: ${r.gatewayVsRawProxy.toFixed(2)}; gateway added p50 ${r.gatewayAddedP50Ms.toFixed(2)} ms`
      )
    },
    (e) => {
      console.error(e)
      process.exitCode = 1
    }
  )
}
