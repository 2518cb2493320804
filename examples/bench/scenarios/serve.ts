// Where a scenario's simulator and gateway run (see `../scenarios.ts`): in the load generator's
// process, or apart in a child process forked from the bench's entry, spoken to over IPC.
import * as Gateway from "@or-balancer/gateway/Gateway"
import * as GatewayConfig from "@or-balancer/gateway/GatewayConfig"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as childProcess from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { TOKEN } from "./call.js"
import {
  type CallerSockets,
  callerSockets,
  heap,
  type RevokedAttempts,
  revokedAttempts,
  snapshot,
  socketCounter
} from "./probes.js"
import { type Spec, specs } from "./specs.js"

/** The bench's entry: the child is that file, run with `--serve=<scenario>`. */
const ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "scenarios.ts")

/** After the load, on the gateway's side: its heap, new upstream sockets, and what was seen. */
export interface AfterLoad {
  readonly afterBytes: number
  /** 2 s later, after a full GC when exposed. */
  readonly idleAfterBytes: number
  /** 10 s later, the same. */
  readonly idleLaterBytes: number
  readonly sockets: number
  readonly stats: Simulator.Stats
  readonly hedges: Readonly<Record<string, number>>
  readonly callers: CallerSockets
  readonly revoked: Readonly<Record<string, RevokedAttempts>>
}

/** The simulator and the gateway of one scenario, in this process or in a child. */
export interface Served {
  readonly url: string
  /** The heap idle before the load; starts counting new upstream sockets. */
  readonly before: () => Promise<number>
  /** The heap now, after a full GC when exposed. */
  readonly heap: () => Promise<number>
  readonly after: () => Promise<AfterLoad>
  readonly close: () => Promise<void>
}

/** The simulator and the gateway in this process. */
export const serveHere = async (spec: Spec): Promise<Served> => {
  const scope = Effect.runSync(Scope.make())
  try {
    const sim = await Effect.runPromise(Simulator.make(spec.sim).pipe(Scope.extend(scope)))
    const env = new Map<string, string>([["SCENARIO_TOKEN", TOKEN]])
    sim.keys.forEach((k, i) => env.set(`SCENARIO_KEY_${i}`, Redacted.value(k.secret)))
    const accounts = Object.fromEntries([...new Set(sim.keys.map((k) => k.account))].map((a) => [a, {}]))
    const config = await Effect.runPromise(
      GatewayConfig.decode({
        listen: { host: "127.0.0.1", port: 0 },
        baseUrl: sim.baseUrl,
        tokens: ["SCENARIO_TOKEN"],
        accounts,
        keys: sim.keys.map((k, i) => ({ id: k.label, secretEnv: `SCENARIO_KEY_${i}`, account: k.account })),
        ...spec.gateway,
        // For experiments: gateway config fields over the scenario's (e.g. '{"hedge":false}').
        ...JSON.parse(process.env.SCENARIO_GATEWAY ?? "{}")
      }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
    )
    const gateway = await Effect.runPromise(Gateway.make(config).pipe(Scope.extend(scope)))
    let sockets: ReturnType<typeof socketCounter> | undefined
    let callers: ReturnType<typeof callerSockets> | undefined
    const revokedSecrets = new Map(
      sim.keys
        .filter((k) => spec.sim.keys.find((c) => c.label === k.label)?.revoked === true)
        .map((k) => [Redacted.value(k.secret), k.label])
    )
    let revoked: ReturnType<typeof revokedAttempts> | undefined
    return {
      url: `${gateway.url}/v1/chat/completions`,
      heap,
      before: async () => {
        const bytes = await heap()
        snapshot("before")
        sockets = socketCounter(sim.port)
        callers = callerSockets(Number(new URL(gateway.url).port))
        revoked = revokedAttempts(revokedSecrets)
        return bytes
      },
      after: async () => {
        const afterBytes = process.memoryUsage().heapUsed
        sockets?.stop()
        callers?.stop()
        revoked?.stop()
        await new Promise((r) => setTimeout(r, 2_000))
        const idleAfterBytes = await heap()
        snapshot("after2s")
        await new Promise((r) => setTimeout(r, 8_000))
        const idleLaterBytes = await heap()
        snapshot("after10s")
        const stats = await Effect.runPromise(sim.stats)
        const totals = (await Effect.runPromise(gateway.status)).totals
        const hedges = { ...totals.hedges, afterMs: totals.hedgeAfterMs ?? 0 }
        const seen = callers?.read() ?? { accepted: 0, errors: {}, peakFds: 0 }
        return {
          afterBytes,
          idleAfterBytes,
          idleLaterBytes,
          sockets: sockets?.count() ?? 0,
          stats,
          hedges,
          callers: seen,
          revoked: revoked?.read() ?? {}
        }
      },
      close: () => Effect.runPromise(Scope.close(scope, Exit.void))
    }
  } catch (e) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw e
  }
}

type ToChild = "before" | "heap" | "after" | "close"
type FromChild =
  | { readonly ready: string }
  | { readonly before: number }
  | { readonly heap: number }
  | { readonly after: AfterLoad }
  | { readonly error: string }

/**
 * The simulator and the gateway in a child process (with `--expose-gc`), so the load generator's
 * own work (10,000 sockets at once for Overload) is not in the gateway's event loop or heap.
 */
export const serveApart = (spec: Spec, quick: boolean): Promise<Served> =>
  new Promise((resolve, reject) => {
    const child = childProcess.fork(
      ENTRY,
      [`--serve=${spec.name}`, ...(quick ? ["--quick"] : [])],
      // The gateway's event lines stay out of this process's stdout (its last line is the JSON).
      { execArgv: ["--expose-gc", "--import", "tsx"], stdio: ["ignore", "ignore", "inherit", "ipc"] }
    )
    const waiting: Array<(m: FromChild) => void> = []
    const ask = <A>(message: ToChild, pick: (m: FromChild) => A | undefined): Promise<A> =>
      new Promise((ok, fail) => {
        waiting.push((m) => {
          const a = pick(m)
          if (a !== undefined) ok(a)
          else fail(new Error("error" in m ? m.error : `unexpected answer to ${message}`))
        })
        child.send(message)
      })
    child.on("message", (m: FromChild) => {
      if ("ready" in m) {
        return resolve({
          url: m.ready,
          before: () => ask("before", (a) => ("before" in a ? a.before : undefined)),
          heap: () => ask("heap", (a) => ("heap" in a ? a.heap : undefined)),
          after: () => ask("after", (a) => ("after" in a ? a.after : undefined)),
          close: () =>
            new Promise((done) => {
              child.once("exit", () => done())
              child.send("close")
            })
        })
      }
      if ("error" in m && waiting.length === 0) return reject(new Error(m.error))
      waiting.shift()?.(m)
    })
    child.once("exit", (code) => reject(new Error(`the scenario's server process exited (${code})`)))
  })

/** The child's side of {@link serveApart}. */
export const serveChild = async (name: string, quick: boolean) => {
  const send = (m: FromChild) => process.send!(m)
  try {
    const spec = specs(quick).find((s) => s.name === name)
    if (spec === undefined) throw new Error(`no scenario named ${name}`)
    const served = await serveHere(spec)
    process.on("message", async (m: ToChild) => {
      try {
        if (m === "before") send({ before: await served.before() })
        else if (m === "heap") send({ heap: await served.heap() })
        else if (m === "after") send({ after: await served.after() })
        else {
          await served.close()
          process.exit(0)
        }
      } catch (e) {
        send({ error: e instanceof Error ? e.message : String(e) })
      }
    })
    send({ ready: served.url })
  } catch (e) {
    send({ error: e instanceof Error ? e.message : String(e) })
    process.exit(1)
  }
}
