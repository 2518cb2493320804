// Each account's management key (`accounts.<name>.managementKeyEnv`), read from the environment
// and checked as a key; the credit lookup asks `GET /api/v1/credits` with it and nothing else.
import * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as ConfigIssues from "./configIssues.js"

export const readManagementKeys = <E>(
  accounts: Readonly<Record<string, { readonly managementKeyEnv?: string | undefined }>> | undefined,
  readEnv: (name: string, path: string) => Effect.Effect<Redacted.Redacted<string>, E>,
  error: (path: string, message: string) => E
): Effect.Effect<Map<string, Key.Key>, E> =>
  Effect.gen(function* () {
    const keys = new Map<string, Key.Key>()
    for (const [account, entry] of Object.entries(accounts ?? {})) {
      if (entry.managementKeyEnv === undefined) continue
      const where = `accounts.${account}.managementKeyEnv`
      const secret = yield* readEnv(entry.managementKeyEnv, where)
      const key = yield* Key.decode(
        { id: `${account}:management`, secret: Redacted.value(secret) },
        where
      ).pipe(
        // Name the variable and what is wrong with its value, never the value.
        Effect.mapError(() =>
          error(
            where,
            `${where}: the value of ${entry.managementKeyEnv} ${ConfigIssues.secretProblem(Redacted.value(secret))}`
          )
        )
      )
      keys.set(account, key)
    }
    return keys
  })
