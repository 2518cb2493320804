// One layout of the gateway bench (see `../gateway.ts`): fresh children, pinned if asked, warmed up,
// then interleaved rounds of every target.
import * as path from "node:path"
import { type Child, spawnChild } from "./ipc.js"
import { load, measureInto, perRound, summarize, type Tally, tally } from "./load.js"
import type { Layout, LayoutResult, SkippedLayout, TargetResult } from "./model.js"
import { message, pin, type Pinning, taskset } from "./pinning.js"
import { CLIENT_TOKEN, TOKEN } from "./settings.js"

export interface LayoutSettings {
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
export const runLayout = async (
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
        : [
            "--cpu-prof",
            `--cpu-prof-dir=${path.join(cpuProfileDir, layout, name)}`,
            // Finer than the default 1 ms when set: a profile of a few seconds of load needs it.
            ...(process.env.GATEWAY_CPU_PROF_INTERVAL === undefined
              ? []
              : [`--cpu-prof-interval=${process.env.GATEWAY_CPU_PROF_INTERVAL}`])
          ]
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
