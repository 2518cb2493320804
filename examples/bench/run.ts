/**
 * `pnpm bench`: selection cost, goodput under trouble, memory, and the gateway (when
 * `bench/gateway.ts` exists). Writes `bench/results.json` and `bench/results.md`.
 *
 * Options: `--quick` (smaller counts, for a smoke run); `--only=<section>[,<section>]` (selection,
 * goodput, memory, gateway) reruns those sections and keeps the others from the last results.json.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Goodput from "./goodput.js"
import type * as Memory from "./memory.js"
import * as Selection from "./selection.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const quick = process.argv.includes("--quick")
const log = (s: string) => console.log(`[bench] ${s}`)
const onlyArg = process.argv.find((a) => a.startsWith("--only="))
// `--report`: no section is rerun; results.md is written again from results.json.
const reportOnly = process.argv.includes("--report")
const only = reportOnly
  ? new Set<string>()
  : onlyArg === undefined
    ? undefined
    : new Set(onlyArg.slice("--only=".length).split(","))
const want = (section: string) => only === undefined || only.has(section)
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const previous: any =
  only === undefined ? undefined : JSON.parse(fs.readFileSync(path.join(here, "results.json"), "utf8"))

const machine = reportOnly
  ? previous.machine
  : {
      cpu: os.cpus()[0]?.model ?? "unknown",
      cores: os.cpus().length,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      date: new Date().toISOString(),
      /** One-minute load average at the start: other work on the machine skews the timings. */
      loadAverage: Number(os.loadavg()[0]!.toFixed(2))
    }

log(
  `machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, load average ${os.loadavg()[0]!.toFixed(2)}`
)

log("1/4 selection cost")
const selection: ReadonlyArray<Selection.Row> = want("selection")
  ? await Selection.run({ budgetMs: quick ? 200 : 800 })
  : previous.selection

log("2/4 goodput under trouble")
const goodput: Awaited<ReturnType<typeof Goodput.run>> = want("goodput")
  ? await Goodput.run(quick ? { requests: 1000 } : {})
  : previous.goodput

log("3/4 memory (child process with --expose-gc)")
const measureMemory = (): Memory.Result | { error: string } => {
  const large = quick ? 100_000 : 1_000_000
  const child = spawnSync(
    process.execPath,
    ["--expose-gc", "--import", "tsx", path.join(here, "memory.ts"), String(large)],
    { encoding: "utf8", cwd: path.join(here, ".."), maxBuffer: 1 << 20 }
  )
  const line = child.stdout.trim().split("\n").pop() ?? ""
  try {
    return JSON.parse(line) as Memory.Result
  } catch {
    return { error: (child.stderr || line || "no output").slice(0, 500) }
  }
}
const memory: Memory.Result | { error: string } = want("memory") ? measureMemory() : previous.memory

log("4/4 gateway")
let gateway: unknown = want("gateway") ? { skipped: "bench/gateway.ts not present" } : previous.gateway
if (want("gateway") && fs.existsSync(path.join(here, "gateway.ts"))) {
  try {
    const mod = (await import("./gateway.js")) as {
      runGatewayBench: (o?: { requests?: number }) => Promise<unknown>
    }
    // The gateway is another package's work in progress: bound it so the suite always finishes.
    let timer: ReturnType<typeof setTimeout> | undefined
    gateway = await Promise.race([
      mod.runGatewayBench(quick ? { requests: 1000 } : {}),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve({ error: "runGatewayBench did not finish within 150 s" }), 150_000)
      })
    ])
    clearTimeout(timer)
  } catch (e) {
    gateway = { error: e instanceof Error ? e.message : String(e) }
  }
}

const composed5 = selection.find((r) => r.keys === 5 && r.strategy.startsWith("composed"))
const composed500 = selection.find((r) => r.keys === 500 && r.strategy.startsWith("composed"))
const targets = {
  // Judged with both pool sizes.
  composedUnder5us:
    composed5 !== undefined &&
    composed5.nsPerOp < 5_000 &&
    composed500 !== undefined &&
    composed500.nsPerOp < 5_000,
  zeroCallerFailures: goodput.ours.failed === 0,
  zeroOverspend: goodput.ours.overspendUsd === 0,
  wastedAtLeast5xFewer: goodput.wastedRatio >= 5,
  memoryUnder10Percent: "growthPercent" in memory && memory.growthPercent < 10
}
const results = {
  machine,
  quick,
  rerun: reportOnly ? previous.rerun : only === undefined ? undefined : [...only],
  selection,
  goodput,
  memory,
  gateway,
  targets
}
fs.writeFileSync(path.join(here, "results.json"), JSON.stringify(results, null, 2) + "\n")

const f = (n: number, d = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d })
const md: Array<string> = []
md.push("# Benchmark results", "")
md.push(
  `Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}. Run ${machine.date}${quick ? " (quick)" : ""}, load average ${machine.loadAverage} at the start.${only === undefined || reportOnly ? "" : ` Sections rerun in this run: ${[...only].join(", ")}; the others are from the previous full run.`}`,
  ""
)
md.push("## 1. Selection cost (select-and-report, no network)", "")
md.push(
  'Each cycle is `select(request) >>= lease.report(success)`, run uninterruptibly, as core\'s Balancer runs it: the report gives the lease back. The harness row (a selector handing out a fixed lease) is the cost of the Effect steps alone; "over harness" subtracts it. The last row per pool size is the whole `Balancer.run` over the composed stack, with an upstream that answers at once. Each figure is the fastest of five equal time slices (other work on a shared machine only slows a slice down).',
  ""
)
md.push(
  "| strategy | keys | selections/s | ns per op | ns over harness | × seed floor |",
  "|---|---:|---:|---:|---:|---:|"
)
for (const r of selection) {
  const harness = selection.find((h) => h.keys === r.keys && h.strategy.startsWith("harness"))
  const over =
    harness === undefined || r.strategy.startsWith("seed") || r.strategy.startsWith("harness")
      ? ""
      : f(Math.max(0, r.nsPerOp - harness.nsPerOp))
  md.push(
    `| ${r.strategy} | ${r.keys} | ${f(r.opsPerSec)} | ${f(r.nsPerOp)} | ${over} | ${f(r.vsSeedFloor)} |`
  )
}
md.push(
  "",
  `Target: composed stack < 5 µs per request: **${targets.composedUnder5us ? "met" : "missed"}** (${composed5 ? f(composed5.nsPerOp / 1000, 1) : "?"} µs with 5 keys, ${composed500 ? f(composed500.nsPerOp / 1000, 1) : "?"} µs with 500).`,
  ""
)
md.push(
  `## 2. Goodput under trouble (demo pool, seed ${goodput.seed}, ${f(goodput.requests)} requests, concurrency ${goodput.concurrency})`,
  ""
)
md.push(
  "| client | succeeded | failed (caller) | upstream calls | wasted calls (401/402/429) | faulted calls | overspend USD | spend USD | wall s |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)
for (const g of [goodput.ours, goodput.seed_port]) {
  md.push(
    `| ${g.client} | ${f(g.succeeded)} | ${f(g.failed)} | ${f(g.upstreamCalls)} | ${f(g.wastedCalls)} | ${f(g.faultedCalls)} | ${g.overspendUsd.toFixed(6)} | ${g.spendUsd.toFixed(4)} | ${g.wallSeconds} |`
  )
}
md.push(
  "",
  `Wasted calls, seed port / ours: **${Number.isFinite(goodput.wastedRatio) ? f(goodput.wastedRatio, 1) : "∞"}×**. Caller-visible failures (ours): ${JSON.stringify(goodput.ours.failures)}; seed port: ${JSON.stringify(goodput.seed_port.failures)}.`,
  ""
)
md.push("## 3. Memory (composed stack, 5 keys)", "")
if ("growthPercent" in memory) {
  md.push(
    "| after cycles | heap MB |",
    "|---:|---:|",
    `| ${f(memory.cyclesSmall)} | ${memory.heapAfterSmallMB} |`,
    `| ${f(memory.cyclesLarge)} | ${memory.heapAfterLargeMB} |`
  )
  md.push("", `Growth: **${memory.growthPercent}%** (target < 10%).`, "")
} else md.push(`Not measured: ${memory.error}`, "")
md.push("## 4. Gateway", "")
const gw = gateway as {
  targets?: ReadonlyArray<Record<string, number | string>>
  gatewayVsRawProxy?: number
  gatewayAddedP50Ms?: number
  gatewayVsRawProxyCpu?: number
  requests?: number
  connections?: number
  upstreamLatencyMs?: number
  error?: string
  skipped?: string
}
if (gw.targets !== undefined) {
  md.push(
    `${f(gw.requests ?? 0)} requests, ${gw.connections} connections, upstream latency ${gw.upstreamLatencyMs} ms.`,
    ""
  )
  md.push(
    "| target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU µs/request | errors |",
    "|---|---:|---:|---:|---:|---:|---:|---:|"
  )
  for (const t of gw.targets) {
    md.push(
      `| ${t.name} | ${f(Number(t.rps))} | ${f(Number(t.p50Ms), 2)} | ${f(Number(t.p99Ms), 2)} | ${f(Number(t.addedP50Ms), 2)} | ${f(Number(t.addedP99Ms), 2)} | ${t.cpuUsPerRequest === undefined ? "" : f(Number(t.cpuUsPerRequest))} | ${t.errors} |`
    )
  }
  md.push(
    "",
    `Gateway / raw proxy throughput: **${f(gw.gatewayVsRawProxy ?? 0, 2)}** (target ≥ 0.7); added p50 ${f(gw.gatewayAddedP50Ms ?? 0, 2)} ms (target < 1 ms); raw proxy CPU per request / gateway's: **${f(gw.gatewayVsRawProxyCpu ?? 0, 2)}** (the load-independent ratio).`,
    ""
  )
} else md.push(gw.error ?? gw.skipped ?? "not run", "")
md.push(
  "## Targets",
  "",
  ...Object.entries(targets).map(([k, v]) => `- ${k}: ${v ? "met" : "**missed**"}`),
  ""
)
fs.writeFileSync(path.join(here, "results.md"), md.join("\n"))
// CI checks formatting of every file: leave the results as prettier writes them.
spawnSync("npx", ["prettier", "--write", path.join(here, "results.json"), path.join(here, "results.md")], {
  cwd: path.join(here, "..", ".."),
  stdio: "ignore"
})
log(`wrote bench/results.json and bench/results.md`)
console.log(md.join("\n"))
process.exit(0)
