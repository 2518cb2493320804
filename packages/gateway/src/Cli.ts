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
 * {@link main} runs it as a program: an error is one line on stderr naming the field or flag at
 * fault (the whole cause with its stack traces only under `--verbose`), exit code 2 for a usage or
 * config mistake and 1 for anything else; help is plain text when the output is not a terminal.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import type * as PlatformRuntime from "@effect/platform/Runtime"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Gateway from "./Gateway.js"
import * as GatewayConfig from "./GatewayConfig.js"
import * as Tracing from "./Tracing.js"
import * as HttpCreditLookup from "@or-balancer/http/HttpCreditLookup"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as CliOutput from "./internal/cliOutput.js"
import * as ConfigIssues from "./internal/configIssues.js"
import * as Reload from "./internal/reload.js"

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
 * The command line asks for something that cannot be done as given (`check` with no keys to check).
 *
 * @since 0.1.0
 * @category Errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

const readProblem: Partial<Record<string, string>> = {
  NotFound: "no such file",
  PermissionDenied: "permission denied",
  BadResource: "not a readable file"
}

/**
 * Reads and decodes a gateway config file. Errors start with the file's name, then the field's path.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const loadConfig = (
  path: string
): Effect.Effect<GatewayConfig.GatewayConfig, GatewayConfig.GatewayConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError(
      (e) =>
        new GatewayConfig.GatewayConfigError({
          path,
          message: `${path}: cannot read it (${e._tag === "SystemError" ? (readProblem[e.reason] ?? e.reason) : e.message})`
        })
    ),
    Effect.flatMap((text) =>
      GatewayConfig.parse(text).pipe(
        Effect.mapError(
          (e) => new GatewayConfig.GatewayConfigError({ path: e.path, message: `${path}: ${e.message}` })
        )
      )
    )
  )

const configFlag = Options.file("config").pipe(Options.withAlias("c"))

const configOption = configFlag.pipe(
  Options.withDescription(
    "gateway config file (JSON). Fields left out take their defaults: listen 127.0.0.1:8080, " +
      `baseUrl ${GatewayConfig.DEFAULT_BASE_URL}, strategy [${GatewayConfig.DEFAULT_STRATEGY_NAMES}], retry.maxAttempts 4, ` +
      "deadlines.keyWaitMs 30000, deadlines.requestMs 60000, deadlines.headersMs 15000, deadlines.bodyMs 30000, deadlines.drainMs 15000, bodyLimitBytes 1048576"
  )
)

// `main` reads it from the arguments; every command declares it so the parser accepts it and
// `--help` lists it.
const verbose = Options.boolean("verbose").pipe(
  Options.withDescription("on an error, print the whole cause with its stack traces")
)

const warn = (config: GatewayConfig.GatewayConfig) =>
  Effect.forEach(GatewayConfig.warnings(config), (w) => Console.error(`warning: ${w}`), { discard: true })

/**
 * `serve --config FILE`.
 *
 * @since 0.1.0
 * @category Commands
 */
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

/**
 * One key's line of the `check` table.
 *
 * @since 0.1.0
 * @category Models
 */
export interface CheckRow {
  readonly id: string
  readonly account: string
  readonly valid: boolean
  readonly limit: string
  readonly remaining: string
  readonly reset: string
  /** Why the key is not usable, or `-`. */
  readonly problem: string
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
            limit: CliOutput.usd(info.limit),
            remaining: CliOutput.usd(info.limitRemaining),
            reset: info.limitReset ?? "never",
            problem: "-"
          })),
          Effect.catchAll((e) =>
            Effect.succeed<CheckRow>({
              id: key.id,
              account: key.account ?? "-",
              valid: false,
              limit: "-",
              remaining: "-",
              reset: "-",
              problem: CliOutput.problemOf(e)
            })
          )
        ),
      { concurrency: 8 }
    )
    yield* Console.log(CliOutput.table(rows))
    const bad = rows.filter((r) => !r.valid).map((r) => r.id)
    if (bad.length > 0) {
      return yield* new CheckFailed({
        bad,
        message: `${bad.length} of ${rows.length} keys failed: ${bad.join(", ")}`
      })
    }
    return rows
  })

// Keys and base URL from the environment, when no file is given.
const fromEnv = Effect.gen(function* () {
  const baseUrl = yield* Config.string("OPENROUTER_BASE_URL").pipe(
    Config.withDefault(GatewayConfig.DEFAULT_BASE_URL),
    Effect.orElseSucceed(() => GatewayConfig.DEFAULT_BASE_URL)
  )
  if (!ConfigIssues.isHttpUrl(baseUrl)) {
    return yield* new UsageError({ message: "OPENROUTER_BASE_URL: must be an http(s) URL" })
  }
  const text = yield* Config.option(Config.redacted("OPENROUTER_API_KEYS")).pipe(
    Effect.orElseSucceed(() => Option.none<Redacted.Redacted<string>>())
  )
  const keys = Option.isNone(text)
    ? []
    : yield* KeyPool.parseKeyList(text.value).pipe(
        // Name what is wrong with the secret (too short, wrong prefix), never the secret.
        Effect.mapError((e) => {
          const i = /^OPENROUTER_API_KEYS\[(\d+)\]\.secret$/.exec(e.path)?.[1]
          if (i === undefined) return e
          const entry = Redacted.value(text.value)
            .split(",")
            .map((s) => s.trim())
            .filter((s) => s.length > 0)[Number(i)]!
          const eq = entry.indexOf("=")
          const secret = eq > 0 ? entry.slice(eq + 1).trim() : entry
          return new UsageError({
            message: `OPENROUTER_API_KEYS[${i}]: the key ${ConfigIssues.secretProblem(secret)}`
          })
        })
      )
  if (keys.length === 0) {
    return yield* new UsageError({
      message:
        "no keys to check: pass --config FILE, or set OPENROUTER_API_KEYS (comma separated, each a key or label=key)"
    })
  }
  return { baseUrl, keys }
})

/**
 * `check [--config FILE]`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const check = Command.make(
  "check",
  {
    config: Options.optional(
      configFlag.pipe(
        Options.withDescription(
          "the keys and baseUrl of this gateway config file. Without it: OPENROUTER_API_KEYS (comma " +
            "separated, each a key or label=key) and OPENROUTER_BASE_URL (default " +
            `${GatewayConfig.DEFAULT_BASE_URL})`
        )
      )
    ),
    verbose
  },
  ({ config }) =>
    Effect.gen(function* () {
      const { baseUrl, clients, keys } = yield* Option.match(config, {
        onSome: (path) =>
          Effect.map(loadConfig(path), (c) => ({ baseUrl: c.baseUrl, keys: c.keys, clients: c.clients })),
        onNone: () => Effect.map(fromEnv, (e) => ({ ...e, clients: [] }))
      })
      if (clients.length > 0)
        yield* Console.log(`named clients and their limits:\n${CliOutput.clientsTable(clients)}\n`)
      yield* Console.log(
        `checking ${keys.length} key${keys.length === 1 ? "" : "s"} with GET ${baseUrl}/key: ` +
          "is the key accepted (valid), its credit limit, what remains of it, when the limit resets\n"
      )
      yield* checkKeys(keys).pipe(
        Effect.provideServiceEffect(CreditLookup.CreditLookup, HttpCreditLookup.make),
        Effect.provide(OpenRouterClient.layerClientConfig({ baseUrl })),
        Effect.provide(NodeHttpClient.layerUndici)
      )
    })
).pipe(
  Command.withDescription(
    "verify every key with GET /api/v1/key: accepted, credit limit, remaining, reset; exit code 1 if one fails"
  )
)

/**
 * `simulate [--port N] [--seed N] [--config FILE]`.
 *
 * @since 0.1.0
 * @category Commands
 */
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

/**
 * The root command.
 *
 * @since 0.1.0
 * @category Commands
 */
export const command = Command.make("or-balancer", { verbose }).pipe(
  Command.withDescription("balance OpenRouter requests across API keys"),
  Command.withSubcommands([serve, check, simulate])
)

/**
 * Runs the command line on `process.argv`-style arguments.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const run = Command.run(command, { name: "or-balancer", version: "0.1.0" })

/**
 * How `main` ended: the process exit code (2: a usage or config mistake; 1: anything else).
 *
 * @since 0.1.0
 * @category Errors
 */
export class ExitCode extends Schema.TaggedError<ExitCode>()("ExitCode", {
  code: Schema.Number
}) {}

/**
 * Runs the command line as a program: prints a failure as one line on stderr (its whole cause
 * under `--verbose`) and fails with the {@link ExitCode} that {@link teardown} hands to the process.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const main = (argv: ReadonlyArray<string>) =>
  run(argv).pipe(
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.void
      const { code, line } = CliOutput.explain(cause)
      return Effect.zipRight(
        argv.includes("--verbose")
          ? Console.error(Cause.pretty(cause, { renderErrorCause: true }))
          : Console.error(line),
        Effect.fail(new ExitCode({ code }))
      )
    }),
    CliOutput.plainWhenPiped
  )

/**
 * The exit code of {@link main}'s outcome, for `NodeRuntime.runMain({ teardown })`.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const teardown: PlatformRuntime.Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
  const failure = Cause.failureOption(exit.cause)
  onExit(Option.isSome(failure) && failure.value instanceof ExitCode ? failure.value.code : 1)
}
