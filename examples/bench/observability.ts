/**
 * What tracing and request logs cost (issue 15), as ratios within one run:
 *   (a) core's `Balancer.run` over the composed stack (5 keys, no-op upstream), in this process:
 *       with `spans: false` (no span code at all), with the default and no tracer installed
 *       (Effect's built-in one: the balancer only looks), and with an OpenTelemetry tracer
 *       (`@effect/opentelemetry`'s NodeSdk, spans processed one by one and discarded);
 *   (b) the gateway's CPU per request (each in its own process, the full strategy stack, the
 *       simulator answering at once): plain; request logs on (`info`, stdout to /dev/null);
 *       tracing on (OTLP/HTTP by the standard variables to a sink in this process that answers
 *       200); both.
 * Variants run in interleaved rounds, the order rotating, and each figure is the median over
 * rounds; the ratios are medians of the per-round ratios (robust to a disturbed round).
 *
 *   npx tsx examples/bench/observability.ts [--quick]
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as Balancer from "@or-balancer/core/Balancer"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Stack from "../src/lib/Stack.js"
import { type Child, load, spawnChild, TOKEN } from "./gateway.js"
import { env, type Env } from "./selection.js"

export interface Variant {
  readonly name: string
  /** Median over rounds. */
  readonly cpuUsPerRequest: number
  /** Median over rounds of this variant's CPU over the first variant's in the same round. */
  readonly vsBaseline: number
}

export interface Result {
  readonly balancer: {
    readonly calls: number
    readonly rounds: number
    readonly variants: ReadonlyArray<Variant>
    /**
     * What the balancer's look for a tracer costs per request with none installed, measured alone
     * (a copy of the check in core's internal/spans.ts against the clock step it rides on): ns.
     */
    readonly noTracerCheckNs: number
  }
  readonly gateway:
    | {
        readonly requests: number
        readonly connections: number
        readonly rounds: number
        readonly variants: ReadonlyArray<Variant>
        readonly errors: number
        readonly spansExported: number
      }
    | { readonly error: string }
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!
}

const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** Rounds over `variants` (the order rotating), CPU µs per op of each, summarized. */
const interleave = async (
  names: ReadonlyArray<string>,
  rounds: number,
  measure: (variant: number) => Promise<number>
): Promise<ReadonlyArray<Variant>> => {
  const perRound: Array<Array<number>> = names.map(() => [])
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const v = (i + r) % names.length
      perRound[v]!.push(await measure(v))
    }
  }
  return names.map((name, v) => ({
    name,
    cpuUsPerRequest: median(perRound[v]!),
    vsBaseline: median(perRound[v]!.map((x, r) => x / perRound[0]![r]!))
  }))
}

/** Spans go nowhere: what remains is making, ending and processing them. */
class Discard implements SpanExporter {
  exported = 0
  export(spans: Array<ReadableSpan>, done: (result: { code: number }) => void): void {
    this.exported += spans.length
    done({ code: 0 }) // ExportResultCode.SUCCESS
  }
  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}

const balancerBench = async (calls: number, rounds: number) => {
  const stack = (options: Balancer.Options) =>
    Balancer.layer(options).pipe(
      Layer.provideMerge(Stack.defaultStrategy() as Layer.Layer<KeySelector.KeySelector, never, Env>),
      Layer.provideMerge(env(5))
    )
  const exporter = new Discard()
  const otel = NodeSdk.layer(() => ({
    resource: { serviceName: "bench" },
    // As Tracing.layerFromEnv has it (batched), exporting nowhere.
    spanProcessor: new BatchSpanProcessor(exporter)
  }))
  const variants = [
    { name: "Balancer.run, spans: false", layer: stack({ spans: false }) },
    { name: "Balancer.run, no tracer installed", layer: stack({}) },
    { name: "Balancer.run, OpenTelemetry tracer", layer: Layer.provideMerge(stack({}), otel) },
    {
      name: "Balancer.run, spans: false, inside two Effect.withSpan (OpenTelemetry): what two spans cost",
      layer: Layer.provideMerge(stack({ spans: false }), otel),
      wrap: (e: Effect.Effect<number, unknown>) => Effect.withSpan(Effect.withSpan(e, "inner"), "outer")
    }
  ]
  const runtimes = await Promise.all(
    variants.map(async (v) => {
      const runtime = ManagedRuntime.make(v.layer)
      const balancer = Context.get((await runtime.runtime()).context, Balancer.Balancer)
      const plain = balancer.run({ model: "openai/gpt-4o-mini" }, () => Effect.succeed(1), {
        costOf: () => 0.0001
      })
      const call = "wrap" in v ? v.wrap(plain) : plain
      const batch = (n: number) =>
        runtime.runPromise(
          Effect.gen(function* () {
            for (let i = 0; i < n; i++) yield* call
          })
        )
      await batch(calls) // warm up
      return { runtime, batch }
    })
  )
  const result = await interleave(
    variants.map((v) => v.name),
    rounds,
    async (v) => {
      const c0 = cpuMicros()
      await runtimes[v]!.batch(calls)
      return (cpuMicros() - c0) / calls
    }
  )
  await Promise.all(runtimes.map((r) => r.runtime.dispose()))
  if (exporter.exported === 0) throw new Error("the OpenTelemetry variant exported no span")
  return { calls, rounds, variants: result, noTracerCheckNs: await checkCost(rounds) }
}

/**
 * The check `Balancer.run` makes per request when no tracer is installed (as core's
 * internal/spans.ts `withClock` does it: the tracer and the tracing switch read in the step that
 * reads the clock anyway) against that step alone (`Effect.clockWith`). Too small to see against
 * `Balancer.run`'s own variation on a loaded machine, so measured alone: ns per request, the
 * median of per-round differences.
 */
const checkCost = async (rounds: number) => {
  const NATIVE = Effect.runSync(Effect.tracer)
  const done = Effect.void
  const bare = Effect.clockWith((clock) => (clock === undefined ? Effect.never : done))
  const checked = Effect.withFiberRuntime<void>((fiber) => {
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    if (fiber.currentTracer === NATIVE || !fiber.getFiberRef(FiberRef.currentTracerEnabled))
      return clock === undefined ? Effect.never : done
    return done
  })
  const n = 200_000
  const loop = (step: Effect.Effect<void>) =>
    Effect.runPromise(
      Effect.gen(function* () {
        for (let i = 0; i < n; i++) yield* step
      })
    )
  await loop(checked)
  await loop(bare)
  const diffs: Array<number> = []
  for (let r = 0; r < rounds * 2; r++) {
    const t0 = cpuMicros()
    await loop(r % 2 === 0 ? bare : checked)
    const t1 = cpuMicros()
    await loop(r % 2 === 0 ? checked : bare)
    const t2 = cpuMicros()
    const [b, c] = r % 2 === 0 ? [t1 - t0, t2 - t1] : [t2 - t1, t1 - t0]
    diffs.push(((c - b) * 1000) / n)
  }
  return median(diffs)
}

/** An OTLP/HTTP endpoint that takes every export and answers 200. */
const sink = () =>
  new Promise<{ readonly url: string; readonly exports: () => number; readonly close: () => void }>(
    (resolve) => {
      let exports = 0
      const server = http.createServer((req, res) => {
        req.on("data", () => undefined)
        req.on("end", () => {
          exports++
          res.writeHead(200, { "content-type": "application/json" })
          res.end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resolve({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          exports: () => exports,
          close: () => {
            server.closeAllConnections()
            server.close()
          }
        })
      )
    }
  )

const gatewayBench = async (requests: number, connections: number, rounds: number) => {
  const otlp = await sink()
  const children: Array<Child> = []
  try {
    const sim = await spawnChild("simulator", { OR_GATEWAY_BENCH_LATENCY: "0" })
    children.push(sim)
    const upstream = {
      OR_GATEWAY_BENCH_UPSTREAM: sim.url,
      OR_GATEWAY_BENCH_SECRETS: JSON.stringify(sim.secrets),
      OR_GATEWAY_BENCH_CLIENTS: "0"
    }
    const logs = { OR_GATEWAY_BENCH_LOG: "info" }
    const tracing = { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SERVICE_NAME: "bench-gateway" }
    const names = [
      "gateway",
      "gateway, request logs on",
      "gateway, tracing on",
      "gateway, logs and tracing on"
    ]
    const gateways = await Promise.all([
      spawnChild("gateway", upstream),
      spawnChild("gateway", { ...upstream, ...logs }),
      spawnChild("gateway", { ...upstream, ...tracing }),
      spawnChild("gateway", { ...upstream, ...logs, ...tracing })
    ])
    children.push(...gateways)
    const auth = `Bearer ${TOKEN}`
    let errors = 0
    for (const g of gateways) await load(g.url, auth, Math.min(2000, requests), connections) // warm up
    const variants = await interleave(names, rounds, async (v) => {
      const g = gateways[v]!
      const c0 = await g.cpu()
      const r = await load(g.url, auth, requests, connections)
      const c1 = await g.cpu()
      errors += r.errors
      return (c1.micros - c0.micros) / requests
    })
    // The batch processor sends every 5 s: give it one more turn before counting.
    await new Promise((r) => setTimeout(r, 6000))
    return { requests, connections, rounds, variants, errors, spansExported: otlp.exports() }
  } finally {
    await Promise.all(children.map((c) => c.stop().catch(() => undefined)))
    otlp.close()
  }
}

export const run = async (options: { readonly quick?: boolean } = {}): Promise<Result> => {
  const quick = options.quick ?? false
  const balancer = await balancerBench(quick ? 2_000 : 10_000, quick ? 5 : 9)
  let gateway: Result["gateway"]
  try {
    gateway = await gatewayBench(quick ? 1_000 : 4_000, 32, quick ? 3 : 6)
  } catch (e) {
    gateway = { error: e instanceof Error ? e.message : String(e) }
  }
  return { balancer, gateway }
}

/** The section of results.md. */
export const markdown = (r: Result): Array<string> => {
  const f = (n: number, d = 0) =>
    n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d })
  const pct = (ratio: number) => `${ratio >= 1 ? "+" : ""}${f((ratio - 1) * 100, 1)} %`
  const md: Array<string> = []
  md.push(
    "Variants measured in interleaved rounds (the order rotating), CPU of the process per request; each figure the median over rounds, each ratio the median of the per-round ratios to the first row.",
    "",
    `**Core's \`Balancer.run\`** over the composed stack, 5 keys, no-op upstream, ${f(r.balancer.calls)} calls × ${r.balancer.rounds} rounds per variant, in one process:`,
    "",
    "| variant | CPU µs per call | vs spans: false |",
    "|---|---:|---:|"
  )
  for (const v of r.balancer.variants)
    md.push(`| ${v.name} | ${f(v.cpuUsPerRequest, 2)} | ${pct(v.vsBaseline)} |`)
  const base = r.balancer.variants[0]!.cpuUsPerRequest * 1000
  md.push(
    "",
    `With no tracer installed the balancer only looks for one, once per request, in the step that reads the clock anyway: measured alone, **${f(r.balancer.noTracerCheckNs)} ns** per request, ${f((r.balancer.noTracerCheckNs / base) * 100, 2)} % of \`Balancer.run\` with \`spans: false\` (the two rows above differ by more than that from run to run on a shared machine). \`unsafeStart\` (the gateway's fast path) has no span code at all.`,
    ""
  )
  if ("error" in r.gateway) md.push(`Gateway: not measured: ${r.gateway.error}`, "")
  else {
    md.push(
      `**The gateway**, full stack, simulator answering at once, ${f(r.gateway.requests)} requests × ${r.gateway.rounds} rounds per variant over ${r.gateway.connections} connections, each gateway in its own process; traces over OTLP/HTTP to a local sink (${f(r.gateway.spansExported)} exports received), logs to /dev/null; ${r.gateway.errors} errors:`,
      "",
      "| variant | CPU µs per request | vs plain |",
      "|---|---:|---:|"
    )
    for (const v of r.gateway.variants)
      md.push(`| ${v.name} | ${f(v.cpuUsPerRequest, 1)} | ${pct(v.vsBaseline)} |`)
    md.push(
      "",
      "Tracing off is the plain row: with no tracer installed the gateway's per-request tracing work is one `undefined` test (`log.ts` `start`), and core's spans are off in the gateway (`spans: false`; it makes its own).",
      ""
    )
  }
  return md
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run({ quick: process.argv.includes("--quick") }).then(
    (r) => {
      console.log(markdown(r).join("\n"))
      process.exit(0)
    },
    (e) => {
      console.error(e)
      process.exit(1)
    }
  )
}
