// The gateway's config from a parsed JSON value (see `GatewayConfig.ts`): the file decoded with its
// schema, its secrets read, the stack checked, and every default filled in.
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { GatewayConfig } from "../GatewayConfig.js"
import { defaultHedge, DEFAULT_BASE_URL, DEFAULT_STRATEGY } from "./configDefaults.js"
import { fail, GatewayConfigError, readEnv } from "./configError.js"
import { File } from "./configFile.js"
import * as ConfigIssues from "./configIssues.js"
import { readAccess, readKeys } from "./configSecrets.js"
import { checkStack } from "./configStack.js"
import { readManagementKeys } from "./managementKeys.js"

const decodeFile = (input: unknown): Effect.Effect<File, GatewayConfigError> =>
  typeof input !== "object" || input === null || Array.isArray(input)
    ? fail(
        "(root)",
        `must be a JSON object such as {"keys": [...]}, not ${input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`}`
      )
    : Effect.suspend(() => {
        const bad = objectName(input, "", 0)
        return bad !== undefined
          ? fail(bad, "must be a string")
          : Schema.decodeUnknown(File, { errors: "all", onExcessProperty: "error" })(input).pipe(
              Effect.mapError((e) => new GatewayConfigError(ConfigIssues.summary(ConfigIssues.issues(e)))),
              // Schema itself must never take the process down over a file: what it throws is
              // still a config error, named at the root.
              Effect.catchAllDefect(() => fail("(root)", "could not be read as a gateway config"))
            )
      })

/**
 * The path of a `name` holding an object or array, if any. Schema's union lookup turns a
 * discriminant into a string with `String(...)`, which throws on an object like
 * `{"toString": 0}`: such a file is refused here, with its path, before it reaches Schema.
 */
const objectName = (value: unknown, path: string, depth: number): string | undefined => {
  if (depth > 32 || typeof value !== "object" || value === null) return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = objectName(value[i], `${path}[${i}]`, depth + 1)
      if (found !== undefined) return found
    }
    return undefined
  }
  for (const [k, v] of Object.entries(value)) {
    const at = path === "" ? k : `${path}.${k}`
    if (k === "name" && typeof v === "object" && v !== null) return at
    const found = objectName(v, at, depth + 1)
    if (found !== undefined) return found
  }
  return undefined
}

export const decode = (input: unknown): Effect.Effect<GatewayConfig, GatewayConfigError> =>
  Effect.gen(function* () {
    const file = yield* decodeFile(input)
    const keys = yield* readKeys(file)
    const managementKeys = yield* readManagementKeys(
      file.accounts,
      readEnv,
      (path, message) => new GatewayConfigError({ path, message })
    )
    const strategy = file.strategy ?? DEFAULT_STRATEGY
    yield* checkStack(strategy, keys)
    const { adminTokens, clients, names, tokens } = yield* readAccess(file)
    const redis =
      file.redis === undefined
        ? undefined
        : {
            url: file.redis.url,
            password:
              file.redis.passwordEnv === undefined
                ? undefined
                : yield* readEnv(file.redis.passwordEnv, "redis.passwordEnv"),
            replicaId: file.redis.replicaId,
            replicas: file.redis.replicas ?? 1,
            leaseTtlMs: file.redis.leaseTtlMs ?? 3_000,
            ...(file.redis.commandTimeoutMs === undefined
              ? {}
              : { commandTimeoutMs: file.redis.commandTimeoutMs })
          }
    const retry = file.retry ?? {}
    const deadlines = file.deadlines ?? {}
    return {
      host: file.listen?.host ?? "127.0.0.1",
      port: file.listen?.port ?? 8080,
      baseUrl: (file.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, ""),
      tokens,
      tokenNames: names,
      ...(managementKeys.size === 0 ? {} : { managementKeys }),
      clients,
      keys,
      strategy,
      retry: {
        maxAttempts: retry.maxAttempts ?? 4,
        baseDelayMs: retry.baseDelayMs ?? 25,
        maxDelayMs: retry.maxDelayMs ?? 2000,
        budget: retry.budget ?? { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }
      },
      deadlines: {
        keyWaitMs: deadlines.keyWaitMs ?? 30_000,
        requestMs: deadlines.requestMs ?? 60_000,
        headersMs: deadlines.headersMs ?? 15_000,
        bodyMs: deadlines.bodyMs ?? 30_000,
        bodyIdleMs: deadlines.bodyIdleMs ?? 300_000,
        drainMs: deadlines.drainMs ?? 15_000
      },
      bodyLimitBytes: file.bodyLimitBytes ?? 1024 * 1024,
      hedge:
        file.hedge === false
          ? false
          : {
              afterMs: file.hedge?.afterMs,
              minMs: file.hedge?.minMs ?? defaultHedge.minMs,
              ratio: file.hedge?.ratio ?? defaultHedge.ratio,
              burst: file.hedge?.burst ?? defaultHedge.burst
            },
      redis,
      publicModels: file.publicModels ?? false,
      admin: { tokens: adminTokens, protect: file.admin?.protect ?? false },
      // Events only above info unless request lines are asked for: no line per drain in every test.
      log: {
        requests: file.log?.requests ?? false,
        level: file.log?.level ?? (file.log?.requests === true ? "info" : "warn")
      }
    } satisfies GatewayConfig
  })
