// How the gateway bench prints a layout (see `../gateway.ts`).
import { isSkipped, type Layout, type LayoutResult, type SkippedLayout } from "./model.js"

const LAYOUT_TEXT: Record<Layout, string> = {
  shared: "nothing pinned: the load generator, the simulator and the proxy compete for the cores",
  pinned: "load generator and simulator on one CPU, the proxy under test on another of its own",
  "cpu-bound": "nothing pinned, upstream answering at once: the proxies' own CPU is the bottleneck"
}

export const printLayout = (l: LayoutResult | SkippedLayout) => {
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
