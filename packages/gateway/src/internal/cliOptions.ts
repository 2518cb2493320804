// What the `or-balancer` commands share (see `Cli.ts`): the `--config` and `--verbose` flags, and
// how a config's warnings are printed.
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as GatewayConfig from "../GatewayConfig.js"

export const configFlag = Options.file("config").pipe(Options.withAlias("c"))

export const configOption = configFlag.pipe(
  Options.withDescription(
    "gateway config file (JSON). Fields left out take their defaults: listen 127.0.0.1:8080, " +
      `baseUrl ${GatewayConfig.DEFAULT_BASE_URL}, strategy [${GatewayConfig.DEFAULT_STRATEGY_NAMES}], retry.maxAttempts 4, ` +
      "deadlines.keyWaitMs 30000, deadlines.requestMs 60000, deadlines.headersMs 15000, deadlines.bodyMs 30000, deadlines.drainMs 15000, bodyLimitBytes 1048576"
  )
)

// `main` reads it from the arguments; every command declares it so the parser accepts it and
// `--help` lists it.
export const verbose = Options.boolean("verbose").pipe(
  Options.withDescription("on an error, print the whole cause with its stack traces")
)

export const warn = (config: GatewayConfig.GatewayConfig) =>
  Effect.forEach(GatewayConfig.warnings(config), (w) => Console.error(`warning: ${w}`), { discard: true })
