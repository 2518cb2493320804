// The secrets the gateway's config file names, read from the environment (see `GatewayConfig.ts`):
// the keys, the gateway and admin tokens, and each named client's token. An error names the field
// and the variable, never a value.
import * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { ClientConfig } from "../GatewayConfig.js"
import type { File } from "./configFile.js"
import { fail, GatewayConfigError, readEnv } from "./configError.js"
import * as ConfigIssues from "./configIssues.js"

export const readKeys = (file: File): Effect.Effect<ReadonlyArray<Key.Key>, GatewayConfigError> =>
  Effect.gen(function* () {
    if (file.keys.length === 0) return yield* fail("keys", "the pool has no keys")
    const accounts = file.accounts
    const keys: Array<Key.Key> = []
    for (let i = 0; i < file.keys.length; i++) {
      const entry = file.keys[i]!
      const where = `keys[${i}]`
      if (accounts !== undefined && entry.account !== undefined && !(entry.account in accounts)) {
        return yield* fail(`${where}.account`, `account "${entry.account}" is not declared in accounts`)
      }
      const secret = yield* readEnv(entry.secretEnv, `${where}.secretEnv`)
      const key = yield* Key.decode(
        {
          id: entry.id,
          secret: Redacted.value(secret),
          ...(entry.account === undefined ? {} : { account: entry.account }),
          ...(entry.weight === undefined ? {} : { weight: entry.weight }),
          ...(entry.maxConcurrency === undefined ? {} : { maxConcurrency: entry.maxConcurrency }),
          ...(entry.models === undefined ? {} : { models: entry.models }),
          ...(entry.baseUrl === undefined ? {} : { baseUrl: entry.baseUrl })
        },
        where
      ).pipe(
        Effect.mapError((e) =>
          // The secret came from the environment: name the variable and what is wrong with its
          // value (too short, no `sk-or-` prefix…), never the value.
          e.path.endsWith(".secret")
            ? new GatewayConfigError({
                path: `${where}.secretEnv`,
                message: `${where}.secretEnv: the value of ${entry.secretEnv} ${ConfigIssues.secretProblem(Redacted.value(secret))}`
              })
            : new GatewayConfigError({ path: e.path, message: e.message })
        )
      )
      keys.push(key)
    }
    yield* Key.validateAll(keys).pipe(
      Effect.mapError((e) => new GatewayConfigError({ path: e.path, message: e.message }))
    )
    return keys
  })

/** Who may call the gateway: its tokens (and their variables' names), named clients, admin tokens. */
export interface Access {
  readonly tokens: ReadonlyArray<Redacted.Redacted<string>>
  readonly names: ReadonlyArray<string>
  readonly clients: ReadonlyArray<ClientConfig>
  readonly adminTokens: ReadonlyArray<Redacted.Redacted<string>>
}

export const readAccess = (file: File): Effect.Effect<Access, GatewayConfigError> =>
  Effect.gen(function* () {
    const tokens: Array<Redacted.Redacted<string>> = []
    const names = file.tokens ?? []
    for (let i = 0; i < names.length; i++) tokens.push(yield* readEnv(names[i]!, `tokens[${i}]`))
    const clients: Array<ClientConfig> = []
    for (const [i, c] of (file.clients ?? []).entries()) {
      if (clients.some((o) => o.id === c.id))
        return yield* fail(`clients[${i}].id`, `"${c.id}" is used twice`)
      clients.push({
        id: c.id,
        token: yield* readEnv(c.tokenEnv, `clients[${i}].tokenEnv`),
        budget:
          c.budget === undefined
            ? undefined
            : {
                usd: c.budget.usd,
                period: c.budget.period,
                reserveUsd: c.budget.reserveUsd ?? 0.01,
                usdPerToken: c.budget.usdPerToken,
                priced: c.budget.reserveUsd === undefined && c.budget.usdPerToken === undefined
              },
        rpm: c.rpm,
        models: c.models
      })
    }
    if (tokens.length === 0 && clients.length === 0 && file.anonymous !== true) {
      return yield* fail("tokens", "name at least one token variable, or set anonymous: true")
    }
    // The admin tokens default to the gateway tokens; an explicit empty list would open the dashboard.
    const adminNames = file.admin?.tokens
    if (adminNames?.length === 0) return yield* fail("admin.tokens", "name at least one token variable")
    const adminTokens: Array<Redacted.Redacted<string>> = []
    for (const [i, name] of (adminNames ?? []).entries())
      adminTokens.push(yield* readEnv(name, `admin.tokens[${i}]`))
    if (adminNames === undefined && tokens.length === 0 && clients.length > 0) {
      // A client's token is for chat only: it never opens the dashboard.
      return yield* fail("admin.tokens", "name an admin token: client tokens do not open the dashboard")
    }
    if (file.admin?.protect === true && adminNames === undefined && tokens.length === 0) {
      return yield* fail("admin.protect", "needs an admin token: name one in admin.tokens")
    }
    return { tokens, names, clients, adminTokens: adminNames === undefined ? tokens : adminTokens }
  })
