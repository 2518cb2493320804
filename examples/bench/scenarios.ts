/**
 * Goodput per scenario, through the gateway (issue 14): Trouble, Chaos (the simulator's
 * `Scenarios`) and Overload (the README's example gateway config over the demo pool, 10,000
 * requests all at once). The simulator and the gateway share a process; with Overload (and with
 * `--apart`, every scenario) they run in a child process apart from the load generator, so its
 * 10,000 sockets are not in the gateway's event loop or heap. What the upstream saw comes from the
 * simulator's own stats, new upstream sockets from `net.client.socket` (sockets the gateway's
 * process opens to the simulator's port: only the gateway opens any), the heap from the gateway's
 * process (`--expose-gc` for the figures after a full GC).
 *
 * File descriptors: Node raises its soft limit to the hard one at start, and the child inherits it.
 * Overload needs about 10,000 in the load generator and 10,000 + 512 in the child (callers, at most
 * 256 upstream sockets, the simulator's side of them): under that the load generator's own
 * connects fail with EMFILE (counted as `reset EMFILE connecting`) and the child's accepts drop
 * connections. `run` warns when the limit is short. A reset's phase (`connecting`, `awaiting
 * response`, `in response`) and the child's accepted connections, their socket errors and its peak
 * fds (`callerSockets`) say which side closed.
 *
 *   node --expose-gc --import tsx examples/bench/scenarios.ts [--quick] [--apart] [--scenario=trouble,overload]   # last line: the JSON
 *   SCENARIO_GATEWAY='{"hedge":false}' …   # gateway config fields over every scenario's, for experiments
 */
import * as http from "node:http"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { call } from "./scenarios/call.js"
import { type CallerSockets, fdLimit, mb, quantile, type RevokedAttempts } from "./scenarios/probes.js"
import { type Served, serveApart, serveChild, serveHere } from "./scenarios/serve.js"
import { type Spec, specs } from "./scenarios/specs.js"

export type { CallerSockets, RevokedAttempts } from "./scenarios/probes.js"
export { specs } from "./scenarios/specs.js"

export interface ScenarioResult {
  readonly name: string
  readonly description: string
  readonly requests: number
  readonly concurrency: number
  readonly rounds: number
  /** Where the gateway and simulator ran: with the load generator, or in a child process. */
  readonly process: string
  readonly succeeded: number
  /** Caller-visible failures by `status reason` (reason: the error's metadata.reason, type or error_type). */
  readonly failures: Readonly<Record<string, number>>
  /**
   * Of those: no key was eligible for the request's whole deadline: the gateway's 503 (`NoKeyAvailable`),
   * or its 504 at the request deadline naming no key tried (their reasons are in `failures`).
   */
  readonly allKeysUnavailable: number
  /** Not answered within the scenario's bound (aborted by the load generator). */
  readonly unfinished: number
  /** Upstream 401/402 answers that reached a caller (the gateway token is valid: every 401 is a key's). */
  readonly upstream401or402AtCaller: number
  /** Caller connections reset or closed without an answer. */
  readonly connectionResets: number
  readonly upstreamCalls: number
  readonly upstreamCallsPerSuccess: number
  readonly upstreamByOutcome: Readonly<Record<string, number>>
  /** What the simulator answered, per key. */
  readonly upstreamByKey: Readonly<Record<string, Readonly<Record<string, number>>>>
  /** Upstream 401s per revoked key (issue 14 item 3: at most the concurrency at its first 401). */
  readonly revoked401s: Readonly<Record<string, number>>
  /** The same from the gateway's process: attempts in flight at the first 401, and started after it. */
  readonly revokedAttempts: Readonly<Record<string, RevokedAttempts>>
  readonly overspendUsd: number
  /** Per key that spent past its cap: by how much and on how many requests (the simulator's accounting). */
  readonly overspendByKey: Readonly<Record<string, { readonly usd: number; readonly requests: number }>>
  readonly spendUsd: number
  readonly goodputPerSecond: number
  /** What the accounts' windows admit per second (null: unlimited). */
  readonly admittedPerSecond: number | null
  readonly goodputVsAdmitted: number | null
  readonly p50Ms: number
  readonly p99Ms: number
  readonly wallSeconds: number
  /** New TCP connections the gateway opened to the simulator. */
  readonly newUpstreamSockets: number
  /** The gateway's process: caller connections it accepted, their socket errors, its peak open fds. */
  readonly callerSockets: CallerSockets
  /** The gateway's hedged requests by outcome and its hedge delay at the end, `afterMs` (`/status` totals). */
  readonly hedges: Readonly<Record<string, number>>
  /** Heap (MB, after a full GC when exposed) idle before the load, right after it, and idle again 2 s and 10 s later. */
  readonly memory: {
    readonly idleBeforeMB: number
    readonly afterMB: number
    readonly idleAfterMB: number
    readonly idleLaterMB: number
    /** Between rounds (Overload): the heap after a full GC once each round but the last has ended. */
    readonly betweenRoundsMB: ReadonlyArray<number>
  }
}

/** `NoKeyAvailable`'s reasons, as the gateway's 503 names them in `error.metadata.reason`. */
const NO_KEY = new Set(["empty", "tried", "cooldown", "unhealthy", "credit", "concurrency", "ineligible"])

const runSpec = async (spec: Spec, served: Served): Promise<ScenarioResult> => {
  const url = new URL(served.url)
  const body = JSON.stringify({
    model: spec.model,
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 8
  })
  const idleBefore = await served.before()
  const latencies: Array<number> = []
  const failures: Record<string, number> = {}
  let succeeded = 0
  let allKeysUnavailable = 0
  let unfinished = 0
  let leaked = 0
  let resets = 0
  const betweenRounds: Array<number> = []
  const start = performance.now()
  for (let round = 0; round < spec.rounds; round++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency })
    const deadline = performance.now() + spec.boundMs
    let next = 0
    await Promise.all(
      Array.from({ length: spec.concurrency }, async () => {
        while (next < spec.requests) {
          next++
          const a = await call(agent, url, body, deadline)
          if (a.status === 200) {
            succeeded++
            latencies.push(a.ms)
            continue
          }
          // The request deadline with no key ever tried: no key was eligible for its whole deadline.
          const noKeyAtAll = a.status === 504 && a.reason === "request_deadline" && a.tried === false
          const kind = `${a.status} ${a.reason}${noKeyAtAll ? " (no key tried)" : ""}`.trim()
          failures[kind] = (failures[kind] ?? 0) + 1
          if (a.status === "unfinished") unfinished++
          else if (a.status === "reset") resets++
          else if (a.status === 401 || a.status === 402) leaked++
          // NoKeyAvailable: no key was eligible for the request's whole key-wait deadline.
          else if ((a.status === 503 && NO_KEY.has(a.reason)) || noKeyAtAll) allKeysUnavailable++
        }
      })
    )
    agent.destroy()
    if (round < spec.rounds - 1) betweenRounds.push(mb(await served.heap()))
  }
  const wall = (performance.now() - start) / 1000
  const { afterBytes, callers, hedges, idleAfterBytes, idleLaterBytes, revoked, sockets, stats } =
    await served.after()
  const revoked401s: Record<string, number> = {}
  for (const k of Object.values(stats.keys)) if (k.revoked) revoked401s[k.label] = k.byOutcome["401"] ?? 0
  latencies.sort((x, y) => x - y)
  const chat = Object.values(stats.keys).reduce((n, k) => n + k.requests, 0)
  const goodput = succeeded / wall
  return {
    name: spec.name,
    description: spec.description,
    process: spec.apart ? "gateway and simulator in a child process" : "one process",
    requests: spec.requests * spec.rounds,
    concurrency: spec.concurrency,
    rounds: spec.rounds,
    succeeded,
    failures,
    allKeysUnavailable,
    unfinished,
    upstream401or402AtCaller: leaked,
    connectionResets: resets,
    upstreamCalls: chat,
    upstreamCallsPerSuccess: Number((chat / Math.max(1, succeeded)).toFixed(3)),
    upstreamByOutcome: stats.byOutcome,
    upstreamByKey: Object.fromEntries(Object.values(stats.keys).map((k) => [k.label, k.byOutcome])),
    revoked401s,
    revokedAttempts: revoked,
    overspendUsd: stats.overspend,
    overspendByKey: Object.fromEntries(
      Object.values(stats.keys)
        .filter((k) => k.overspentRequests > 0)
        .map((k) => [k.label, { usd: k.overspend, requests: k.overspentRequests }])
    ),
    spendUsd: Number(stats.spend.toFixed(6)),
    goodputPerSecond: Math.round(goodput),
    admittedPerSecond: spec.admittedPerSecond,
    goodputVsAdmitted:
      spec.admittedPerSecond === null ? null : Number((goodput / spec.admittedPerSecond).toFixed(3)),
    p50Ms: Number(quantile(latencies, 0.5).toFixed(1)),
    p99Ms: Number(quantile(latencies, 0.99).toFixed(1)),
    wallSeconds: Number(wall.toFixed(2)),
    newUpstreamSockets: sockets,
    callerSockets: callers,
    hedges,
    memory: {
      idleBeforeMB: mb(idleBefore),
      afterMB: mb(afterBytes),
      idleAfterMB: mb(idleAfterBytes),
      idleLaterMB: mb(idleLaterBytes),
      betweenRoundsMB: betweenRounds
    }
  }
}

export const run = async (
  options: { quick?: boolean; only?: ReadonlyArray<string>; apart?: boolean } = {}
) => {
  const quick = options.quick ?? false
  const out: Array<ScenarioResult> = []
  for (const spec of specs(quick)) {
    if (options.only !== undefined && !options.only.includes(spec.name)) continue
    const apart = spec.apart || options.apart === true
    const fds = fdLimit()
    if (fds !== undefined && fds < spec.concurrency + 1_000)
      console.error(
        `[scenarios] ${spec.name}: open files limited to ${fds}, under ${spec.concurrency + 1_000}`
      )
    console.error(`[scenarios] ${spec.name}${apart ? " (gateway and simulator in a child process)" : ""}`)
    const served = apart ? await serveApart(spec, quick) : await serveHere(spec)
    try {
      out.push(await runSpec({ ...spec, apart }, served))
    } finally {
      await served.close()
    }
  }
  return out
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes("--quick")
  const serve = process.argv.find((a) => a.startsWith("--serve="))?.slice("--serve=".length)
  if (serve !== undefined) {
    await serveChild(serve, quick)
  } else {
    const only = process.argv
      .find((a) => a.startsWith("--scenario="))
      ?.slice("--scenario=".length)
      .split(",")
    const results = await run({ quick, apart: process.argv.includes("--apart"), ...(only ? { only } : {}) })
    console.log(JSON.stringify(results))
    process.exit(0)
  }
}
