/** The scale-out section of results.md (see `scaleout.ts`). */
import type * as ScaleOut from "./scaleout.js"

export const markdown = (
  r: ScaleOut.ScaleOutResult | { error: string } | undefined,
  f: (n: number, d?: number) => string
): Array<string> => {
  const md = ["## 6. Scale-out: gateway replicas on one Redis (issue 16)", ""]
  if (r === undefined) return [...md, "Not run yet.", ""]
  if ("error" in r) return [...md, `Not measured: ${r.error}`, ""]
  md.push(
    `Each replica is its own \`or-balancer serve\` process (health-aware › concurrency-limited 64 › credit-aware), all against one simulator answering in ${r.upstreamLatencyMs} ms, each loaded by ${r.connectionsPerReplica} keep-alive connections with ${f(r.requestsPerReplica)} requests; ${r.rounds} interleaved rounds, medians shown. "3 without Redis" is the control: the same number of busy processes on the machine, nothing shared. CPU per request is the replicas' own (/proc), not Redis's.`,
    "",
    "| configuration | req/s per replica | p50 ms | p99 ms | CPU µs/request | errors |",
    "|---|---:|---:|---:|---:|---:|",
    ...r.rows.map(
      (x) =>
        `| ${x.name} | ${f(x.rpsPerReplica)} | ${f(x.p50Ms, 2)} | ${f(x.p99Ms, 2)} | ${f(x.cpuUsPerRequest)} | ${x.errors} |`
    ),
    "",
    `Per-replica throughput, 3 on Redis ÷ 1 alone: **${f(r.perReplicaThroughputRatio, 2)}** (target ≥ 0.9; ÷ 3 without Redis: ${f(r.vsThreeWithoutRedis, 2)}). Added p50: **${f(r.addedP50Ms, 2)} ms** (target < 0.3 ms; against 3 without Redis: ${f(r.addedP50VsThreeWithoutRedisMs, 2)} ms).`,
    "",
    `Limits over 3 replicas (cap ${r.limits.cap} per key, three keys of $0.50 at $0.01 a request, 210 requests): max in flight per key at the upstream **${r.limits.maxInFlightPerKey.join(", ")}** on Redis, ${r.limits.maxInFlightPerKeyWithoutRedis.join(", ")} without; served ${r.limits.served} of the ${r.limits.creditRequests} the credit allows; overspend **$${r.limits.overspendUsd.toFixed(2)}** on Redis, $${r.limits.overspendUsdWithoutRedis.toFixed(2)} without.`,
    "",
    `Redis stopped mid-load and started again empty: **${r.redisRestart.failed}** failed of ${f(r.redisRestart.requests)} requests. A replica SIGKILLed: its permit and credit slices gone from Redis after **${Number.isNaN(r.sigkill.secondsUntilReturned) ? "(not seen)" : `${f(r.sigkill.secondsUntilReturned, 2)} s`}** (lease TTL ${r.sigkill.ttlSeconds} s).`,
    ""
  )
  return md
}
