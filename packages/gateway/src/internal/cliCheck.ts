// `or-balancer check [--config FILE]` (see `Cli.ts`): `GET /api/v1/key` for every key, printed as
// a table; the keys from the file, else from `OPENROUTER_API_KEYS`.
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as HttpCreditLookup from "@or-balancer/http/HttpCreditLookup"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { CheckRow } from "../Cli.js"
import * as CliOutput from "./cliOutput.js"
import { configFlag, verbose } from "./cliOptions.js"
import { DEFAULT_BASE_URL } from "./configDefaults.js"
import * as ConfigIssues from "./configIssues.js"
import { load as loadConfig } from "./configLoad.js"

export class CheckFailed extends Schema.TaggedError<CheckFailed>()("CheckFailed", {
  bad: Schema.Array(Schema.String),
  message: Schema.String
}) {}

export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

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
    Config.withDefault(DEFAULT_BASE_URL),
    Effect.orElseSucceed(() => DEFAULT_BASE_URL)
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

export const check = Command.make(
  "check",
  {
    config: Options.optional(
      configFlag.pipe(
        Options.withDescription(
          "the keys and baseUrl of this gateway config file. Without it: OPENROUTER_API_KEYS (comma " +
            "separated, each a key or label=key) and OPENROUTER_BASE_URL (default " +
            `${DEFAULT_BASE_URL})`
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
