/**
 * The `--real` path of every example, pointed at a simulator the test starts: keys come from
 * `OPENROUTER_API_KEYS` and the base URL from `OPENROUTER_BASE_URL`, exactly as against the real
 * API, and no simulator of the example's own is started. Also `pnpm example <name>` as a process.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Runner from "../src/lib/Runner.js"
import * as Target from "../src/lib/Target.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const examplesDir = path.join(here, "../src/examples")
const names = fs
  .readdirSync(examplesDir)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => f.slice(0, -3))
  .sort()

interface ExampleModule {
  readonly simulator: Simulator.Config
  readonly keys?: Runner.Example<unknown, unknown>["keys"]
  readonly program: Runner.Example<unknown, unknown>["program"]
  readonly main: (options?: Runner.Options) => Promise<unknown>
}

const load = (name: string) =>
  Effect.promise(() => import(`../src/examples/${name}.ts`) as Promise<ExampleModule>)

const keyList = (sim: Simulator.Handle) =>
  sim.keys.map((k) => `${k.label}=${Redacted.value(k.secret)}`).join(",")

/**
 * Real mode allows the real API's two minutes per request, so a simulated stall would hold a test
 * that long: the simulator here keeps every other fault but answers instead of stalling.
 */
const withoutStalls = (config: Simulator.Config): Simulator.Config => ({
  ...config,
  keys: config.keys.map((k) => {
    if (k.faults?.rates?.stall === undefined) return k
    const { stall: _stall, ...rates } = k.faults.rates
    return { ...k, faults: { ...k.faults, rates } }
  })
})

/** Runs `name` in real mode against a simulator started here with the example's own config. */
const runReal = (name: string) =>
  Effect.gen(function* () {
    const mod = yield* load(name)
    const sim = yield* Simulator.make(withoutStalls(mod.simulator))
    const out = Runner.capture()
    const env = new Map([
      ["OPENROUTER_API_KEYS", keyList(sim)],
      ["OPENROUTER_BASE_URL", sim.baseUrl]
    ])
    const result = yield* Runner.provide(
      { simulator: mod.simulator, keys: mod.keys, program: mod.program },
      { real: true, console: out.console }
    ).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
    return { result: result as Record<string, unknown>, text: out.lines.join("\n"), sim }
  })

describe("examples --real", () => {
  it("every example module exports its simulator, program and main", async () => {
    expect(names.length).toBeGreaterThanOrEqual(13)
    for (const name of names) {
      const mod = await Effect.runPromise(load(name))
      expect(Effect.isEffect(mod.program), name).toBe(true)
      expect(typeof mod.main, name).toBe("function")
      expect(Array.isArray(mod.simulator.keys), name).toBe(true)
    }
  })

  it.effect("the real target reads OPENROUTER_API_KEYS and defaults to OpenRouter's base URL", () =>
    Effect.gen(function* () {
      const target = yield* Effect.provide(
        Target.Target,
        Target.layerRealWith(() => ({ weight: 3 }))
      ).pipe(
        Effect.withConfigProvider(
          ConfigProvider.fromMap(
            new Map([
              [
                "OPENROUTER_API_KEYS",
                `a=${Simulator.simulatedSecret(1, 0)},b=${Simulator.simulatedSecret(1, 1)}`
              ]
            ])
          )
        )
      )
      expect(target.mode).toBe("real")
      expect(target.simulator).toBeUndefined()
      expect(target.baseUrl).toBe(OpenRouterClient.DEFAULT_BASE_URL)
      expect(target.baseUrl).toBe("https://openrouter.ai/api/v1")
      expect(target.keys.map((k) => [k.id, k.weight])).toEqual([
        ["a", 3],
        ["b", 3]
      ])
    })
  )

  for (const name of names) {
    it.scopedLive(`${name}: runs in real mode, talking only to the configured base URL`, () =>
      Effect.gen(function* () {
        const { result, text, sim } = yield* runReal(name)
        expect(text.length).toBeGreaterThan(0)
        expect(text).not.toMatch(/sk-or-v1-[0-9a-f]{8}/)
        // Its requests reached the simulator named by OPENROUTER_BASE_URL.
        expect((yield* sim.stats).requests).toBeGreaterThan(0)
        if (name === "weighted") {
          // Per-key settings apply to the real keys too.
          expect(result.counts).toEqual({ "key-1": 30, "key-2": 20, "key-3": 10 })
        }
        if (name === "round-robin") {
          expect(result.distribution).toEqual({ "key-1": 10, "key-2": 10, "key-3": 10 })
        }
        if (name === "concurrency-limited") {
          for (const k of Object.values((yield* sim.stats).keys)) expect(k.maxInFlight).toBeLessThanOrEqual(2)
        }
      })
    )
  }
})

const runExample = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.promise(
    () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        let out = ""
        const proc = spawn(process.execPath, ["--import", "tsx", "src/run-example.ts", ...args], {
          cwd: path.join(here, ".."),
          env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
          stdio: ["ignore", "pipe", "pipe"]
        })
        proc.stdout.on("data", (b: Buffer) => (out += b.toString("utf8")))
        proc.stderr.on("data", (b: Buffer) => (out += b.toString("utf8")))
        proc.once("exit", (code) => resolve({ code, out }))
      })
  )

describe("pnpm example <name>", () => {
  it.live(
    "runs an example against its own simulator",
    () =>
      Effect.gen(function* () {
        const { code, out } = yield* runExample(["round-robin"], {})
        expect(code).toBe(0)
        expect(out).toContain("distribution of 30 requests")
      }),
    60_000
  )

  it.scopedLive(
    "--real uses OPENROUTER_API_KEYS and OPENROUTER_BASE_URL; without keys it says so and exits 1",
    () =>
      Effect.gen(function* () {
        const mod = yield* load("round-robin")
        const sim = yield* Simulator.make(mod.simulator)
        const { code, out } = yield* runExample(["round-robin", "--real"], {
          OPENROUTER_API_KEYS: keyList(sim),
          OPENROUTER_BASE_URL: sim.baseUrl
        })
        expect(code, out).toBe(0)
        expect(out).toContain("distribution of 30 requests")
        expect((yield* sim.stats).requests).toBe(30)
        for (const k of sim.keys) expect(out).not.toContain(Redacted.value(k.secret))

        const missing = yield* runExample(["round-robin", "--real"], {})
        expect(missing.code).toBe(1)
        expect(missing.out).toContain("--real needs OPENROUTER_API_KEYS")
        const unknown = yield* runExample(["no-such-example"], {})
        expect(unknown.code).toBe(1)
        expect(unknown.out).toContain("round-robin")
      }),
    60_000
  )
})
