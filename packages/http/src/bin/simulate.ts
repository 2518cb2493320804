/**
 * Runs the OpenRouter simulator as a standalone server:
 *
 *   npx tsx packages/http/src/bin/simulate.ts --port 8787 [--config file.json] [--seed N]
 *
 * Without `--config` it serves the demo pool. Prints the base URL and the simulated keys.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as Simulator from "../Simulator.js"

class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

const USAGE = "usage: simulate [--port N] [--config file.json] [--seed N]"

const parseArgs = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    let port: number | undefined
    let seed: number | undefined
    let config: string | undefined
    for (let i = 0; i < argv.length; i++) {
      const flag = argv[i]!
      const value = argv[i + 1]
      if (flag === "--help" || flag === "-h") return yield* new UsageError({ message: USAGE })
      if (value === undefined) return yield* new UsageError({ message: `${flag} needs a value\n${USAGE}` })
      i++
      switch (flag) {
        case "--port":
          port = Number(value)
          if (!Number.isInteger(port) || port < 0 || port > 65535)
            return yield* new UsageError({ message: `--port must be 0..65535, got ${value}` })
          break
        case "--seed":
          seed = Number(value)
          if (!Number.isInteger(seed))
            return yield* new UsageError({ message: `--seed must be an integer, got ${value}` })
          break
        case "--config":
          config = value
          break
        default:
          return yield* new UsageError({ message: `unknown option ${flag}\n${USAGE}` })
      }
    }
    return { port, seed, config }
  })

const loadConfig = (path: string | undefined, seed: number | undefined) =>
  path === undefined
    ? Effect.succeed(Simulator.demoPool(seed ?? 42))
    : Effect.try({
        try: () => JSON.parse(fs.readFileSync(path, "utf8")) as unknown,
        catch: (e) =>
          new UsageError({ message: `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}` })
      }).pipe(
        Effect.flatMap(Simulator.decodeConfig),
        Effect.map((c) => (seed === undefined ? c : { ...c, seed }))
      )

const program = Effect.gen(function* () {
  const args = yield* parseArgs(process.argv.slice(2))
  const config = yield* loadConfig(args.config, args.seed)
  const sim = yield* Simulator.make({ ...config, port: args.port ?? config.port ?? 8787 })
  yield* Console.log(`OpenRouter simulator listening: ${sim.baseUrl}`)
  yield* Console.log(`stats: GET ${sim.url}/__simulator/stats   reset: POST ${sim.url}/__simulator/reset`)
  yield* Console.log("Simulated keys (fake secrets, valid only against this simulator):")
  for (const key of sim.keys) {
    yield* Console.log(
      `  ${key.label.padEnd(16)} account=${key.account.padEnd(10)} ${Redacted.value(key.secret)}`
    )
  }
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.catchAll((e) =>
    Console.error(e.message).pipe(Effect.zipRight(Effect.sync(() => (process.exitCode = 2))))
  )
)

NodeRuntime.runMain(program)
