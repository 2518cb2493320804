// The gateway bench's load generator (see `../gateway.ts`) and its tallies: keep-alive POSTs bounded in
// count, each run's latencies and the target's and the simulator's CPU over it.
import * as http from "node:http"
import { performance } from "node:perf_hooks"
import type { Child } from "./ipc.js"
import type { TargetResult } from "./model.js"
import { BODY } from "./settings.js"

export const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

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

export interface Tally {
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

export const tally = (): Tally => ({
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

export const median = (xs: ReadonlyArray<number>) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5
  )
export const perRound = (
  a: ReadonlyArray<number>,
  b: ReadonlyArray<number>,
  f: (x: number, y: number) => number
) => median(a.map((x, i) => f(x, b[i]!)))

/** One measured run against `target`, counting its own and the simulator's CPU over the run. */
export const measureInto = async (
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

export const summarize = (name: TargetResult["name"], t: Tally) => {
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
