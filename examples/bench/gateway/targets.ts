// What each child of the gateway bench runs (see `../gateway.ts`): the simulator, the raw proxy (the
// floor), or the gateway.
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { type FromChild, serveIpc } from "./ipc.js"
import { CLIENTS, LABELS, LOG, STRATEGY, TOKEN } from "./settings.js"

export const runSimulator = async () => {
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
export const runRawProxy = async () => {
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

export const runGateway = async () => {
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
