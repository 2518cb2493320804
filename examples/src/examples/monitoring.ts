/**
 * Monitoring (the seed's `LoadMonitor`, done right): per-key counts by outcome, latency p50/p99
 * from a fixed-size histogram (constant memory, not a list of every latency), error rate, spend,
 * and the same as Effect `Metric`s tagged by key id, ready for any metrics exporter.
 */
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

// Labels of its own: the metrics are process-wide, and other examples use key-1..key-n.
export const simulator: Simulator.Config = {
  ...Pools.healthy(3),
  keys: Pools.healthy(3).keys.map((k, i) =>
    i === 2
      ? {
          ...k,
          label: "monitored-3",
          faults: { script: ["500", "ok", "ok", "502"], loop: true, latency: { kind: "fixed", ms: 20 } }
        }
      : { ...k, label: `monitored-${i + 1}` }
  )
}

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  yield* Effect.forEach(
    Array.from({ length: 60 }, (_, i) => i),
    (i) => Effect.either(client.chat(Pools.ask(`Question ${i}`))),
    { concurrency: 4, discard: true }
  )
  const stats = yield* monitor.stats
  yield* Console.log("key      requests  share  p50 ms  p99 ms  errors  spend")
  for (const k of stats.keys) {
    yield* Console.log(
      `${k.id.padEnd(8)} ${String(k.requests).padStart(8)} ${(k.share * 100).toFixed(0).padStart(5)}% ${k.latencyMs.p50.toFixed(1).padStart(7)} ${k.latencyMs.p99.toFixed(1).padStart(7)} ${(k.errorRate * 100).toFixed(0).padStart(6)}%  ${Runner.usd(k.spend)}`
    )
  }
  yield* Console.log(
    `totals: ${stats.requests} attempts, ${stats.successes} ok, ${stats.failures} failed, ${stats.retries} retries`
  )
  // The same numbers as Effect metrics: counters tagged by key and outcome.
  const snapshot = yield* Metric.snapshot
  const metricLines = snapshot
    .filter((p) => p.metricKey.name === "or_balancer_requests_total")
    .map((p) => {
      const tags = p.metricKey.tags.map((t) => `${t.key}="${t.value}"`).join(",")
      const state = p.metricState as unknown as { count?: number }
      return `or_balancer_requests_total{${tags}} ${state.count ?? 0}`
    })
    .sort()
  yield* Console.log(metricLines.join("\n"))
  return { stats, metricLines }
}).pipe(Effect.provide(Stack.layer(RoundRobin.layer())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
