/**
 * `Cli.main`, the program the `or-balancer` executable runs: every mistake is one short line on
 * stderr naming the field or flag, exit code 2 for usage and config mistakes and 1 for a failed
 * check, a stack trace only under `--verbose`; help has no colour codes when piped. Most cases run
 * in-process through `Cli.main`; a few spawn the executable to check the exit code the process
 * really ends with.
 */
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Cli from "../src/Cli.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, envOf, fileFor, post, simKeys } from "./GatewaySupport.js"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const bin = path.join(root, "packages/gateway/src/bin/or-balancer.ts")

const SECRET = `sk-or-v1-${"ab12".repeat(16)}`
const ENV = new Map([
  ["K1", SECRET],
  ["TOK", "t0ken"],
  ["SHORT", "sk-or-abc"]
])

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-main-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const writeFile = (dir: string, name: string, content: unknown) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content))
  return file
}

interface Run {
  readonly code: number
  readonly out: string
  readonly err: string
}

const recorder = () => {
  const out: Array<string> = []
  const err: Array<string> = []
  const console = (current: Console.Console): Console.Console => ({
    ...current,
    log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void out.push(args.map(String).join(" "))),
    error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void err.push(args.map(String).join(" ")))
  })
  return { out, err, console }
}

const codeOf = (exit: Exit.Exit<unknown, unknown>): number => {
  let code = -1
  Cli.teardown(exit, (c) => (code = c))
  return code
}

/** `or-balancer ARGS` in-process, with `env` as the environment. */
const main = (args: ReadonlyArray<string>, env: Map<string, string> = ENV) =>
  Effect.gen(function* () {
    const rec = recorder()
    const current = yield* Console.consoleWith(Effect.succeed)
    const exit = yield* Cli.main(["node", "or-balancer", ...args]).pipe(
      Effect.provide(NodeContext.layer),
      Effect.withConfigProvider(ConfigProvider.fromMap(env)),
      Effect.withConsole(rec.console(current)),
      Effect.exit
    )
    return { code: codeOf(exit), out: rec.out.join("\n"), err: rec.err.join("\n") } satisfies Run
  })

const oneLine = (run: Run, expected: string | RegExp) => {
  const lines = run.err.trim().split("\n")
  assert.lengthOf(lines, 1, run.err)
  if (typeof expected === "string") assert.strictEqual(lines[0], expected)
  else assert.match(lines[0]!, expected)
  assert.notMatch(run.err, /^\s+at /m, "no stack trace")
  assert.notInclude(run.err, SECRET)
}

const waitFor = (f: () => boolean, what: string, output: () => string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 400; i++) {
      if (f()) return
      yield* Effect.sleep(Duration.millis(25))
    }
    assert.fail(`timed out waiting for ${what}; output:\n${output()}`)
  })

const base = { tokens: ["TOK"], keys: [{ id: "a", secretEnv: "K1" }] }

describe("or-balancer errors (Cli.main)", () => {
  it.scopedLive("a config mistake is one line naming the field, exit code 2, no stack trace", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [
          { ...base, keys: [{ id: "a", secretEnv: "K1", weight: -1 }] },
          "keys[0].weight: must be a positive integer"
        ],
        [[], '(root): must be a JSON object such as {"keys": [...]}, not an array'],
        [null, '(root): must be a JSON object such as {"keys": [...]}, not null'],
        [
          { ...base, keys: [{ id: "a", secretEnv: "SHORT" }] },
          "keys[0].secretEnv: the value of SHORT is too short to be an OpenRouter key"
        ],
        [
          { ...base, baseUrl: "http://bad host/api/v1" },
          "baseUrl: must be an http(s) URL, such as https://openrouter.ai/api/v1"
        ],
        [
          { ...base, keys: [{ id: "a", secretEnv: "K1", baseUrl: "http://bad host/api/v1" }] },
          "keys[0].baseUrl: must be an http(s) URL"
        ],
        ["{not json", "(root): not valid JSON (at position 1)"]
      ]
      for (const [content, message] of cases) {
        const file = writeFile(dir, "gw.json", content)
        for (const command of ["serve", "check"]) {
          const run = yield* main([command, "--config", file])
          assert.strictEqual(run.code, 2, `${command} ${JSON.stringify(content)}: ${run.err}`)
          oneLine(run, `error: ${file}: ${message}`)
        }
      }
      const missing = yield* main(["serve", "--config", path.join(dir, "nope.json")])
      assert.strictEqual(missing.code, 2)
      oneLine(missing, `error: ${path.join(dir, "nope.json")}: cannot read it (no such file)`)
    })
  )

  it.scopedLive("a command-line mistake names the flag, never a raw error object; exit code 2", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["serve", "--config"], "Expected a value following option: '--config'"],
        [["frob"], "Invalid subcommand for or-balancer - use one of 'serve', 'check', 'simulate'"],
        [["simulate", "--port", "abc"], "'abc' is not a integer"],
        [["serve"], "--config"]
      ]
      for (const [args, message] of cases) {
        const run = yield* main(args)
        assert.strictEqual(run.code, 2, `${args.join(" ")}: ${run.err}`)
        assert.include(run.err, message)
        assert.include(run.err, 'run "or-balancer --help" for usage')
        assert.notInclude(run.err, "_tag")
        assert.notMatch(run.err, /^\s+at /m)
        assert.isAtMost(
          run.err
            .trim()
            .split("\n")
            .filter((l) => l !== "").length,
          3,
          run.err
        )
      }
    })
  )

  it.scopedLive("check with nothing to check names OPENROUTER_API_KEYS and --config; exit code 2", () =>
    Effect.gen(function* () {
      const run = yield* main(["check"], new Map())
      assert.strictEqual(run.code, 2)
      oneLine(
        run,
        "error: no keys to check: pass --config FILE, or set OPENROUTER_API_KEYS (comma separated, each a key or label=key)"
      )
      assert.strictEqual(run.out, "")
      const bad = yield* main(["check"], new Map([["OPENROUTER_API_KEYS", "abc"]]))
      assert.strictEqual(bad.code, 2)
      oneLine(bad, 'error: OPENROUTER_API_KEYS[0]: the key must start with "sk-or-"')
      const short = yield* main(["check"], new Map([["OPENROUTER_API_KEYS", "ok=sk-or-abc"]]))
      assert.strictEqual(short.code, 2)
      oneLine(short, "error: OPENROUTER_API_KEYS[0]: the key is too short to be an OpenRouter key")
      const url = yield* main(
        ["check"],
        new Map([
          ["OPENROUTER_API_KEYS", SECRET],
          ["OPENROUTER_BASE_URL", "http://bad host"]
        ])
      )
      assert.strictEqual(url.code, 2)
      oneLine(url, "error: OPENROUTER_BASE_URL: must be an http(s) URL")
    })
  )

  it.scopedLive("a failed check prints its table, then one line; exit code 1", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 7,
        keys: simKeys(["alive", "dead"]).map((k) => (k.label === "dead" ? { ...k, revoked: true } : k))
      })
      const dir = yield* tempDir
      const file = writeFile(dir, "gw.json", fileFor(sim))
      const run = yield* main(["check", "--config", file], envOf(sim))
      assert.strictEqual(run.code, 1)
      assert.match(run.out, /^dead\s+acme\s+NO\s+-\s+-\s+-\s+unauthorized/m)
      oneLine(run, "error: 1 of 2 keys failed: dead")
    })
  )

  it.scopedLive("--verbose prints the whole cause with its stack trace", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const file = writeFile(dir, "gw.json", { ...base, keys: [{ id: "a", secretEnv: "K1", weight: -1 }] })
      const run = yield* main(["serve", "--config", file, "--verbose"])
      assert.strictEqual(run.code, 2)
      assert.include(run.err, "GatewayConfigError")
      assert.include(run.err, "keys[0].weight: must be a positive integer")
      assert.match(run.err, /^\s+at /m)
    })
  )

  it.scopedLive(
    "serve warns of a weight round robin ignores; a reload to a broken baseUrl is refused by path",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["first", "second"]) })
        const dir = yield* tempDir
        const good = fileFor(sim)
        const file = writeFile(dir, "gw.json", {
          ...good,
          keys: good.keys.map((k, i) => (i === 1 ? { ...k, weight: 3 } : k))
        })
        const rec = recorder()
        const current = yield* Console.consoleWith(Effect.succeed)
        const fiber = yield* Cli.main(["node", "or-balancer", "serve", "--config", file]).pipe(
          Effect.provide(NodeContext.layer),
          Effect.withConfigProvider(ConfigProvider.fromMap(envOf(sim))),
          Effect.withConsole(rec.console(current)),
          Effect.forkScoped
        )
        const all = () => [...rec.out, ...rec.err].join("\n")
        yield* waitFor(() => /listening on/.test(rec.out.join("\n")), "the gateway to listen", all)
        assert.include(
          rec.err.join("\n"),
          'warning: keys[1].weight: no effect under round-robin; use "weighted", "weighted-random" or "least-busy"'
        )
        const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(rec.out.join("\n"))![1]!

        // A broken baseUrl at reload: refused with its path, the running configuration kept. (The
        // file is written again until the watcher, started just after "listening", sees it.)
        const reloadTo = (content: unknown, seen: RegExp, what: string) =>
          Effect.gen(function* () {
            for (let i = 0; i < 40 && !seen.test(rec.err.join("\n")); i++) {
              writeFile(dir, "gw.json", content)
              yield* Effect.sleep(Duration.millis(500))
            }
            assert.match(rec.err.join("\n"), seen, `${what}; output:\n${all()}`)
          })
        yield* reloadTo({ ...good, baseUrl: "http://bad host/api/v1" }, /reload failed/, "the refused reload")
        assert.include(
          rec.err.join("\n"),
          `reload failed, keeping the running configuration: ${file}: baseUrl: must be an http(s) URL`
        )
        yield* reloadTo(
          { ...good, keys: [{ ...good.keys[0]!, baseUrl: "http://bad host/api/v1" }] },
          /keys\[0\]\.baseUrl/,
          "the refused per-key reload"
        )
        assert.include(rec.err.join("\n"), `${file}: keys[0].baseUrl: must be an http(s) URL`)
        assert.strictEqual((yield* post(`${url}/v1/chat/completions`, chatBody())).status, 200)
        assert.notMatch(all(), /^\s+at /m)
        yield* Fiber.interrupt(fiber)
      })
  )
})

/** The executable as a child process: stdout and stderr are pipes, not terminals. */
const spawnCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<Run>((resume) => {
    let out = ""
    let err = ""
    const proc = spawn(process.execPath, ["--import", "tsx", bin, ...args], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    proc.stdout.on("data", (b: Buffer) => (out += b.toString("utf8")))
    proc.stderr.on("data", (b: Buffer) => (err += b.toString("utf8")))
    proc.once("close", (code) => resume(Effect.succeed({ code: code ?? -1, out, err })))
    return Effect.sync(() => void proc.kill("SIGKILL"))
  })

describe("or-balancer executable (child process)", () => {
  it.scopedLive(
    "exit code 2 and one line for a config or usage mistake; --help is plain text when piped",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const file = writeFile(dir, "gw.json", { ...base, keys: [{ id: "a", secretEnv: "K1", weight: -1 }] })
        const [config, usage, help, simHelp] = yield* Effect.all(
          [
            spawnCli(["serve", "--config", file], Object.fromEntries(ENV)),
            spawnCli(["serve", "--config"]),
            spawnCli(["--help"]),
            spawnCli(["simulate", "--help"])
          ],
          { concurrency: "unbounded" }
        )
        assert.strictEqual(config.code, 2, config.err)
        oneLine(config, `error: ${file}: keys[0].weight: must be a positive integer`)

        assert.strictEqual(usage.code, 2, usage.err)
        assert.include(usage.err, "Expected a value following option: '--config'")
        assert.notInclude(usage.err, "_tag")
        assert.notMatch(usage.err, /ERROR|^\s+at /m)

        assert.strictEqual(help.code, 0, help.err)
        assert.include(help.out, "serve")
        assert.notInclude(help.out, "\x1b[", "no colour codes in piped help")
        assert.strictEqual(simHelp.code, 0)
        assert.notInclude(simHelp.out, "\x1b[")
        assert.include(simHelp.out, "default 8787")
        assert.include(simHelp.out, "default 42")
      }),
    60_000
  )
})
