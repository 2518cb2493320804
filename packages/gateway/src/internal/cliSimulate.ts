// `or-balancer simulate [--port N] [--seed N] [--config FILE]` (see `Cli.ts`): the OpenRouter
// simulator on loopback, its fake keys printed.
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { verbose } from "./cliOptions.js"

export const simulate = Command.make(
  "simulate",
  {
    port: Options.integer("port").pipe(
      Options.withDescription("port to listen on on 127.0.0.1 (default 8787; 0 picks a free port)"),
      Options.withDefault(8787)
    ),
    seed: Options.integer("seed").pipe(
      Options.withDescription("seed of the fake keys, latencies and faults (default 42)"),
      Options.withDefault(42)
    ),
    config: Options.optional(
      Options.file("config").pipe(
        Options.withDescription("simulator config (JSON); default: a demo pool of keys and accounts")
      )
    ),
    verbose
  },
  ({ config, port, seed }) =>
    Effect.gen(function* () {
      const base = yield* Option.match(config, {
        onNone: () => Effect.succeed(Simulator.demoPool(seed)),
        onSome: (path) =>
          Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
            Effect.flatMap((text) =>
              Effect.try({
                try: () => JSON.parse(text) as unknown,
                catch: () =>
                  new Simulator.SimulatorError({
                    reason: "InvalidConfig",
                    message: `${path}: not valid JSON`
                  })
              })
            ),
            Effect.flatMap(Simulator.decodeConfig)
          )
      })
      const sim = yield* Simulator.make({ ...base, port })
      yield* Console.log(`OpenRouter simulator listening: ${sim.baseUrl}`)
      for (const key of sim.keys) {
        yield* Console.log(
          `  ${key.label.padEnd(16)} account=${key.account.padEnd(10)} ${Redacted.value(key.secret)}`
        )
      }
      return yield* Effect.never
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("run the OpenRouter simulator (fake keys, loopback)"))
