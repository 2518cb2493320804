/**
 * `pnpm demo`: the simulator with the demo pool (two accounts, five keys: a small credit cap, a
 * revoked key, a flaky one, a rate-limited account) and a few thousand requests, some streamed,
 * over several models, through the default composed stack. Shows progress while it runs, then a
 * per-key table, totals and a bar chart; then the same pool behind the gateway for two named
 * clients with budgets: where the money went per client, and each key's credit forecast. Writes
 * the same as JSON to `.demo-out/demo.json`.
 *
 * `pnpm demo --replicas 3`: three gateway replicas over one pool, alone and then sharing one Redis
 * (see `lib/FleetPhase.ts`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as CreditLedger from "@or-balancer/strategies/CreditLedger"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as ClientsPhase from "./lib/ClientsPhase.js"
import * as FleetPhase from "./lib/FleetPhase.js"
import * as Runner from "./lib/Runner.js"
import * as Stack from "./lib/Stack.js"
import * as Target from "./lib/Target.js"

export interface Options {
  readonly requests?: number
  readonly concurrency?: number
  readonly seed?: number
  /** Where demo.json goes. Default `.demo-out` under the current directory. */
  readonly outDir?: string
  /** Live progress line (rewritten in place) or periodic plain lines. Default: whether stdout is a TTY. */
  readonly tty?: boolean
  readonly console?: Runner.Options["console"]
}

export interface KeyRow {
  readonly id: string
  readonly account: string | undefined
  readonly requests: number
  readonly share: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly errors: Readonly<Record<string, number>>
  /** USD left by the ledger (null: unlimited); undefined when the lookup failed (see `creditError`). */
  readonly creditLeft: number | null | undefined
  readonly creditError: string | undefined
  readonly health: string
  /** What the simulator saw of this key, by status or fault. */
  readonly upstream: Readonly<Record<string, number>>
}

export interface Report {
  readonly seed: number
  readonly wallMs: number
  readonly totals: {
    readonly requests: number
    readonly succeeded: number
    readonly failed: number
    readonly streamed: number
    readonly attempts: number
    readonly retries: number
    readonly spend: number
    readonly overspend: number
  }
  readonly failures: Readonly<Record<string, number>>
  readonly keys: ReadonlyArray<KeyRow>
  /** The gateway phase: spend per named client, and each key's credit forecast. */
  readonly clients: ReadonlyArray<ClientsPhase.ClientRow>
  readonly forecasts: ReadonlyArray<ClientsPhase.ForecastRow>
}

const models = [
  "openai/gpt-4o-mini",
  "anthropic/claude-sonnet-4",
  "google/gemini-2.0-flash-001",
  "meta-llama/llama-3.1-8b-instruct"
]

const program = (options: Options) =>
  Effect.gen(function* () {
    const total = options.requests ?? 3000
    const concurrency = options.concurrency ?? 32
    const tty = options.tty ?? process.stdout.isTTY === true
    const client = yield* OpenRouterClient.OpenRouterClient
    const monitor = yield* Monitor.Monitor
    const ledger = yield* CreditLedger.CreditLedger
    const target = yield* Target.Target
    const started = performance.now()
    let done = 0
    let ok = 0
    let streamed = 0
    const failures: Record<string, number> = {}

    const progress = Effect.gen(function* () {
      const elapsed = ((performance.now() - started) / 1000).toFixed(1)
      const line = `${Runner.bar(done / total, 30)} ${String(done).padStart(5)}/${total}  ok ${ok}  failed ${done - ok}  ${elapsed}s`
      if (tty) yield* Effect.sync(() => process.stdout.write(`\r${line}`))
      else yield* Console.log(line)
    })
    const ticker = yield* Effect.fork(
      Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(tty ? 200 : 2000)), progress))
    )

    const one = (i: number) => {
      const model = models[i % models.length]!
      const request = {
        model,
        messages: [{ role: "user", content: `Question ${i}` }],
        max_tokens: 16 + (i % 5) * 8,
        ...(i % 7 === 0 ? { session_id: `user-${i % 13}` } : {})
      }
      let chunks = 0
      const call =
        i % 5 === 0
          ? client.chatStream({ ...request, stream: true }).pipe(
              Stream.runForEach(() => Effect.sync(() => chunks++)),
              Effect.tap(() => Effect.sync(() => streamed++))
            )
          : Effect.asVoid(client.chat(request))
      return call.pipe(
        Effect.match({
          onSuccess: () => {
            ok++
          },
          onFailure: (e) => {
            // After the first chunk a stream cannot move to another key: the caller sees the error.
            const kind = chunks > 0 ? `${e._tag} (mid-stream)` : e._tag
            failures[kind] = (failures[kind] ?? 0) + 1
          }
        }),
        Effect.ensuring(Effect.sync(() => done++))
      )
    }
    yield* Effect.forEach(
      Array.from({ length: total }, (_, i) => i),
      one,
      { concurrency, discard: true }
    )
    yield* Fiber.interrupt(ticker)
    yield* progress
    if (tty) yield* Effect.sync(() => process.stdout.write("\n"))
    const wallMs = Math.round(performance.now() - started)

    const stats = yield* monitor.stats
    const health = yield* HealthAware.status()
    const credit = new Map((yield* ledger.snapshot).map((e) => [e.id, e]))
    const sim = target.simulator ? yield* target.simulator.stats : undefined
    const keys: Array<KeyRow> = target.keys.map((k) => {
      const s = stats.keys.find((x) => x.id === k.id)
      return {
        id: k.id,
        account: k.account,
        requests: s?.requests ?? 0,
        share: s?.share ?? 0,
        p50Ms: s?.latencyMs.p50 ?? 0,
        p99Ms: s?.latencyMs.p99 ?? 0,
        errors: s?.errors ?? {},
        creditLeft:
          credit.get(k.id)?.error === undefined ? (credit.get(k.id)?.available ?? s?.credit) : undefined,
        creditError: credit.get(k.id)?.error,
        // A key whose credit lookup fails (401: revoked) is never chosen, so health never sees it.
        health:
          credit.get(k.id)?.error !== undefined
            ? `excluded (GET /key: ${credit.get(k.id)?.error})`
            : (health.keys.find((h) => h.id === k.id)?.state ?? "healthy"),
        upstream: sim?.keys[k.id]?.byOutcome ?? {}
      }
    })
    const base: Omit<Report, "clients" | "forecasts"> = {
      seed: options.seed ?? 42,
      wallMs,
      totals: {
        requests: total,
        succeeded: ok,
        failed: total - ok,
        streamed,
        attempts: stats.requests,
        retries: stats.retries,
        spend: Number(stats.spend.toFixed(6)),
        overspend: sim?.overspend ?? 0
      },
      failures,
      keys
    }

    yield* Console.log("")
    yield* Console.log(
      "key            account  requests  share  p50 ms  p99 ms  credit left  health     errors"
    )
    for (const r of keys) {
      const creditText =
        r.creditLeft === null ? "unlimited" : r.creditLeft === undefined ? "-" : Runner.usd(r.creditLeft)
      yield* Console.log(
        [
          r.id.padEnd(14),
          (r.account ?? "").padEnd(8),
          String(r.requests).padStart(8),
          `${(r.share * 100).toFixed(1)}%`.padStart(6),
          r.p50Ms.toFixed(0).padStart(7),
          r.p99Ms.toFixed(0).padStart(7),
          creditText.padStart(12),
          r.health.padEnd(10),
          Object.entries(r.errors)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ") || "-"
        ].join(" ")
      )
    }
    const t = base.totals
    yield* Console.log("")
    yield* Console.log(
      `requests ${t.requests}  succeeded ${t.succeeded}  failed ${t.failed}  streamed ${t.streamed}  upstream attempts ${t.attempts}  retries ${t.retries}  spend ${Runner.usd(t.spend)}  overspend ${Runner.usd(t.overspend)}  ${(wallMs / 1000).toFixed(1)}s`
    )
    if (t.failed > 0) yield* Console.log(`failures seen by callers: ${JSON.stringify(failures)}`)
    if (t.failed > 0 && Object.keys(failures).every((k) => k.endsWith("(mid-stream)")))
      yield* Console.log(
        "  by design: streams that broke after part of the answer reached the caller (the flaky key's\n" +
          "  mid-stream errors); failing over would have sent that part twice. See the README."
      )
    yield* Console.log("")
    yield* Console.log("distribution of upstream attempts:")
    for (const r of keys)
      yield* Console.log(`  ${r.id.padEnd(14)} ${Runner.bar(r.share, 40)} ${(r.share * 100).toFixed(1)}%`)
    // Last: the same pool behind the gateway, for two named clients, and each key's forecast.
    const phase = yield* ClientsPhase.run(target.baseUrl, target.keys, Math.max(40, Math.round(total / 10)))
    const report: Report = { ...base, clients: phase.clients, forecasts: phase.forecasts }

    const outDir = options.outDir ?? path.join(process.cwd(), ".demo-out")
    const file = path.join(outDir, "demo.json")
    yield* Effect.sync(() => {
      fs.mkdirSync(outDir, { recursive: true })
      fs.writeFileSync(file, JSON.stringify(report, null, 2) + "\n")
    })
    yield* Console.log(`\nwrote ${path.relative(process.cwd(), file) || file}`)
    return report
  }).pipe(Effect.provide(Stack.layer(Stack.defaultStrategy())))

/** The demo as an Effect (the test runs it in-process with fewer requests). */
export const demo = (options: Options = {}) =>
  Runner.provide(
    { simulator: Simulator.demoPool(options.seed ?? 42), program: program(options) },
    { console: options.console }
  )

export const main = (options: Options = {}): Promise<Report> => Effect.runPromise(demo(options))

/** `--replicas N` (or `--replicas=N`): N gateway replicas, alone and then on one Redis (`FleetPhase`). */
const replicasArg = (argv: ReadonlyArray<string>): number | undefined => {
  const i = argv.findIndex((a) => a === "--replicas" || a.startsWith("--replicas="))
  if (i < 0) return undefined
  const raw = argv[i]!.includes("=") ? argv[i]!.slice("--replicas=".length) : argv[i + 1]
  const n = Number(raw)
  return Number.isInteger(n) && n >= 1 ? n : undefined
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const arg = process.argv.find((a) => a.startsWith("--requests="))
  const replicas = replicasArg(process.argv)
  ;(replicas === undefined
    ? main(arg === undefined ? {} : { requests: Number(arg.slice("--requests=".length)) })
    : Effect.runPromise(FleetPhase.run(replicas))
  ).then(
    () => process.exit(0),
    (e) => {
      console.error(`demo failed: ${(e as Error).message}`)
      process.exit(1)
    }
  )
}
