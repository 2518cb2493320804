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
 *   GATEWAY_CPU_REQUESTS=n  requests per target in the CPU-bound layout (`pnpm bench`: 16 rounds
 *                           of 1,000; a round of a few hundred requests swung ±30 % on its own)
 *   GATEWAY_ONLY_CPU=1      the CPU-bound layout only
 *   GATEWAY_B=/other/checkout/examples/bench/gateway.ts
 *                           a same-run A/B: a second gateway, from another checkout, measured in the
 *                           same interleaved rounds; prints the median of (B − A) µs/request
 *   GATEWAY_B_STRATEGY='[{"name":"round-robin"}]'
 *                           gateway B with another stack (the config's JSON list): the stack's own
 *                           cost in place, as B − A
 *   GATEWAY_CPU_PART=user|system
 *                           each child reports only that part of its CPU time (a checkout without
 *                           this switch, as GATEWAY_B, still reports both): on loopback the socket
 *                           writes' kernel work is system time, the proxies' JavaScript user time
 *   GATEWAY_CPU_PROF_INTERVAL=250
 *                           with GATEWAY_CPU_PROF: the profiler's sampling interval in µs (1000 by
 *                           default: too coarse for a few seconds of load)
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { runLayout, type LayoutSettings } from "./gateway/layout.js"
import {
  isSkipped,
  type GatewayBenchOptions,
  type GatewayBenchResult,
  type LayoutResult,
  type SkippedLayout
} from "./gateway/model.js"
import { planPinning } from "./gateway/pinning.js"
import type { FromChild } from "./gateway/ipc.js"
import { printLayout } from "./gateway/report.js"
import { LOG, STRATEGY } from "./gateway/settings.js"
import { runGateway, runRawProxy, runSimulator } from "./gateway/targets.js"

export type {
  GatewayBenchOptions,
  GatewayBenchResult,
  Layout,
  LayoutResult,
  SkippedLayout,
  TargetResult
} from "./gateway/model.js"
export { isSkipped } from "./gateway/model.js"
export { type Child, spawnChild } from "./gateway/ipc.js"
export { load, type Load, quantile } from "./gateway/load.js"
export { STRATEGY, TOKEN } from "./gateway/settings.js"

const here = fileURLToPath(import.meta.url)

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
        requests: options.cpuBoundRequests ?? Number(process.env.GATEWAY_CPU_REQUESTS ?? settings.requests),
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
