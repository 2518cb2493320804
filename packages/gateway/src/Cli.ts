/**
 * The `or-balancer` command line, built with `@effect/cli`:
 *
 * - `or-balancer serve --config FILE`: runs the gateway. `SIGHUP`, or a change to the file,
 *   re-reads it and reloads keys, tokens and strategy without dropping requests in flight (a bad
 *   file is reported and the running configuration kept); `SIGTERM`/`SIGINT` drain up to `deadlines.drainMs`, then exit.
 * - `or-balancer check [--config FILE]`: `GET /api/v1/key` for every key (from the file, else from
 *   `OPENROUTER_API_KEYS` and `OPENROUTER_BASE_URL`), printed as a table; fails if any key is bad.
 * - `or-balancer simulate [--port N] [--seed N] [--config FILE]`: runs the OpenRouter simulator.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Gateway from "./Gateway.js"
import * as GatewayConfig from "./GatewayConfig.js"
import * as HttpCreditLookup from "@or-balancer/http/HttpCreditLookup"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"

/**
 * `check` found at least one key that is not usable.
 *
 * @since 0.1.0
 * @category Errors
 */
export class CheckFailed extends Schema.TaggedError<CheckFailed>()("CheckFailed", {
  bad: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/**
 * Reads and decodes a gateway config file.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const loadConfig = (
  path: string
): Effect.Effect<GatewayConfig.GatewayConfig, GatewayConfig.GatewayConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError(
      (e) => new GatewayConfig.GatewayConfigError({ path, message: `${path}: cannot read (${e.message})` })
    ),
    Effect.flatMap(GatewayConfig.parse)
  )

const configOption = Options.file("config").pipe(
  Options.withAlias("c"),
  Options.withDescription("gateway config file (JSON)")
)

/**
 * `serve --config FILE`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const serve = Command.make("serve", { config: configOption }, ({ config: path }) =>
  Effect.gen(function* () {
    const config = yield* loadConfig(path)
    yield* Gateway.tuneGc
    const gateway = yield* Gateway.make(config)
    yield* Console.log(`or-balancer gateway listening on ${gateway.url} (OpenAI base URL ${gateway.url}/v1)`)
    yield* Console.log(
      `keys: ${config.keys.map((k) => k.id).join(", ")}; strategy: ${config.strategy.map((s) => s.name).join(" > ")}`
    )
    const runtime = yield* Effect.runtime<FileSystem.FileSystem>()
    const reload = loadConfig(path).pipe(
      Effect.flatMap(gateway.reload),
      Effect.zipRight(Console.log(`reloaded ${path}`)),
      Effect.catchAll((e) => Console.error(`reload failed, keeping the running configuration: ${e.message}`))
    )
    const onHup = () => void Runtime.runFork(runtime)(reload)
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHup)),
      () => Effect.sync(() => process.off("SIGHUP", onHup))
    )
    // A change to the file reloads it too. The directory is watched, not the file, so an editor
    // that saves by renaming a new file over the old one is seen; the debounce folds the several
    // events of one save into one reload. (Also the way to reload under `tsx`'s CLI, which does
    // not pass SIGHUP on to the program.)
    const fs = yield* FileSystem.FileSystem
    const paths = yield* Path.Path
    const name = paths.basename(path)
    yield* fs.watch(paths.dirname(paths.resolve(path))).pipe(
      Stream.filter((event) => paths.basename(event.path) === name),
      Stream.debounce(Duration.millis(200)),
      Stream.runForEach(() => reload),
      Effect.catchAll((e) => Console.error(`not watching ${path} for changes: ${e.message}`)),
      Effect.forkScoped
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)
).pipe(Command.withDescription("run the OpenAI-compatible gateway"))

interface CheckRow {
  readonly id: string
  readonly account: string
  readonly valid: boolean
  readonly limit: string
  readonly remaining: string
  readonly reset: string
}

const usd = (n: number | null) => (n === null ? "unlimited" : `$${n.toFixed(4)}`)

const table = (rows: ReadonlyArray<CheckRow>): string => {
  const head = ["id", "account", "valid", "limit", "remaining", "reset"]
  const cells = rows.map((r) => [r.id, r.account, r.valid ? "yes" : "NO", r.limit, r.remaining, r.reset])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) =>
    c
      .map((s, i) => s.padEnd(widths[i]!))
      .join("  ")
      .trimEnd()
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n")
}

/**
 * Looks up every key and prints the table; fails with {@link CheckFailed} if any key is bad.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const checkKeys = (
  keys: ReadonlyArray<Key.Key>
): Effect.Effect<ReadonlyArray<CheckRow>, CheckFailed, CreditLookup.CreditLookup> =>
  Effect.gen(function* () {
    const lookup = yield* CreditLookup.CreditLookup
    const rows = yield* Effect.forEach(
      keys,
      (key) =>
        lookup.lookup(key).pipe(
          Effect.map((info): CheckRow => ({
            id: key.id,
            account: key.account ?? "-",
            valid: true,
            limit: usd(info.limit),
            remaining: usd(info.limitRemaining),
            reset: info.limitReset ?? "never"
          })),
          Effect.catchAll((e) =>
            Effect.succeed<CheckRow>({
              id: key.id,
              account: key.account ?? "-",
              valid: false,
              limit: "-",
              remaining: "-",
              reset: e._tag
            })
          )
        ),
      { concurrency: 8 }
    )
    yield* Console.log(table(rows))
    const bad = rows.filter((r) => !r.valid).map((r) => r.id)
    if (bad.length > 0) {
      return yield* new CheckFailed({
        bad,
        message: `${bad.length} of ${rows.length} keys failed: ${bad.join(", ")}`
      })
    }
    return rows
  })

/**
 * `check [--config FILE]`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const check = Command.make("check", { config: Options.optional(configOption) }, ({ config }) =>
  Effect.gen(function* () {
    const { baseUrl, keys } = yield* Option.match(config, {
      onSome: (path) => Effect.map(loadConfig(path), (c) => ({ baseUrl: c.baseUrl, keys: c.keys })),
      onNone: () =>
        Effect.all({
          baseUrl: Config.string("OPENROUTER_BASE_URL").pipe(
            Config.withDefault(GatewayConfig.DEFAULT_BASE_URL)
          ),
          keys: Effect.flatMap(Config.redacted("OPENROUTER_API_KEYS"), (text) => KeyPool.parseKeyList(text))
        })
    })
    yield* checkKeys(keys).pipe(
      Effect.provideServiceEffect(CreditLookup.CreditLookup, HttpCreditLookup.make),
      Effect.provide(OpenRouterClient.layerClientConfig({ baseUrl })),
      Effect.provide(NodeHttpClient.layerUndici)
    )
  })
).pipe(Command.withDescription("verify every key with GET /api/v1/key"))

/**
 * `simulate [--port N] [--seed N] [--config FILE]`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const simulate = Command.make(
  "simulate",
  {
    port: Options.integer("port").pipe(Options.withDefault(8787)),
    seed: Options.integer("seed").pipe(Options.withDefault(42)),
    config: Options.optional(Options.file("config").pipe(Options.withDescription("simulator config (JSON)")))
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

/**
 * The root command.
 *
 * @since 0.1.0
 * @category Commands
 */
export const command = Command.make("or-balancer").pipe(Command.withSubcommands([serve, check, simulate]))

/**
 * Runs the command line on `process.argv`-style arguments.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const run = Command.run(command, { name: "or-balancer", version: "0.1.0" })
