// The gateway's config from JSON text or a file (see `GatewayConfig.ts`, `Cli.loadConfig`). An
// error names a position or the file, never the text: it could hold something secret.
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import type { GatewayConfig } from "../GatewayConfig.js"
import { decode } from "./configDecode.js"
import { GatewayConfigError } from "./configError.js"

export const parse = (text: string): Effect.Effect<GatewayConfig, GatewayConfigError> =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (e) => {
      const at = e instanceof Error ? /position \d+/.exec(e.message)?.[0] : undefined
      return new GatewayConfigError({
        path: "(root)",
        message: `(root): not valid JSON${at === undefined ? "" : ` (at ${at})`}`
      })
    }
  }).pipe(Effect.flatMap(decode))

const readProblem: Partial<Record<string, string>> = {
  NotFound: "no such file",
  PermissionDenied: "permission denied",
  BadResource: "not a readable file"
}

/** Errors start with the file's name, then the field's path. */
export const load = (path: string): Effect.Effect<GatewayConfig, GatewayConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError(
      (e) =>
        new GatewayConfigError({
          path,
          message: `${path}: cannot read it (${e._tag === "SystemError" ? (readProblem[e.reason] ?? e.reason) : e.message})`
        })
    ),
    Effect.flatMap((text) =>
      parse(text).pipe(
        Effect.mapError((e) => new GatewayConfigError({ path: e.path, message: `${path}: ${e.message}` }))
      )
    )
  )
