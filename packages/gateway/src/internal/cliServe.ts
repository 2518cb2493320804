// `or-balancer serve --config FILE` (see `Cli.ts`): the gateway, reloaded when its file changes.
import * as Command from "@effect/cli/Command"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Gateway from "../Gateway.js"
import * as GatewayConfig from "../GatewayConfig.js"
import * as Tracing from "../Tracing.js"
import { configOption, verbose, warn } from "./cliOptions.js"
import { load as loadConfig } from "./configLoad.js"
import * as Reload from "./reload.js"

export const serve = Command.make("serve", { config: configOption, verbose }, ({ config: path }) =>
  Effect.gen(function* () {
    const config = yield* loadConfig(path)
    yield* warn(config)
    yield* Gateway.tuneGc
    const gateway = yield* Gateway.make(config)
    yield* Console.log(`or-balancer gateway listening on ${gateway.url} (OpenAI base URL ${gateway.url}/v1)`)
    yield* Console.log(
      `keys: ${config.keys.map((k) => k.id).join(", ")}; strategy: ${config.strategy.map((s) => s.name).join(" > ")}`
    )
    yield* Reload.onChange(path, config, gateway, Effect.tap(loadConfig(path), warn))
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    // Traces over OTLP when the standard OTEL_EXPORTER_OTLP_* variables ask for them (Tracing.ts).
    Effect.provide(Tracing.layerFromEnv)
  )
).pipe(
  Command.withDescription(
    `run the OpenAI-compatible gateway (file defaults: listen 127.0.0.1:8080, baseUrl ${GatewayConfig.DEFAULT_BASE_URL}, strategy ${GatewayConfig.DEFAULT_STRATEGY_NAMES})`
  )
)
