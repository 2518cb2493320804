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
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as PlatformRuntime from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import type * as GatewayConfig from "./GatewayConfig.js"
import * as CliCheck from "./internal/cliCheck.js"
import { verbose } from "./internal/cliOptions.js"
import * as CliOutput from "./internal/cliOutput.js"
import * as CliServe from "./internal/cliServe.js"
import * as CliSimulate from "./internal/cliSimulate.js"
import * as ConfigLoad from "./internal/configLoad.js"

export {
  /**
   * `check` found at least one key that is not usable.
   *
   * @since 0.1.0
   * @category Errors
   */
  CheckFailed,
  /**
   * The command line asks for something that cannot be done as given (`check` with no keys to check).
   *
   * @since 0.1.0
   * @category Errors
   */
  UsageError
} from "./internal/cliCheck.js"

/**
 * Reads and decodes a gateway config file. Errors start with the file's name, then the field's path.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const loadConfig: (
  path: string
) => Effect.Effect<GatewayConfig.GatewayConfig, GatewayConfig.GatewayConfigError, FileSystem.FileSystem> =
  ConfigLoad.load

/**
 * `serve --config FILE`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const serve = CliServe.serve

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
export const checkKeys: (
  keys: ReadonlyArray<Key.Key>
) => Effect.Effect<ReadonlyArray<CheckRow>, CliCheck.CheckFailed, CreditLookup.CreditLookup> =
  CliCheck.checkKeys

/**
 * `check [--config FILE]`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const check = CliCheck.check

/**
 * `simulate [--port N] [--seed N] [--config FILE]`.
 *
 * @since 0.1.0
 * @category Commands
 */
export const simulate = CliSimulate.simulate

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
