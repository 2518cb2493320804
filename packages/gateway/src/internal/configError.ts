// How reading the gateway's config fails (see `GatewayConfig.ts`): one error naming the field.
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

export class GatewayConfigError extends Schema.TaggedError<GatewayConfigError>()("GatewayConfigError", {
  path: Schema.String,
  message: Schema.String
}) {}

export const fail = (path: string, message: string) =>
  Effect.fail(new GatewayConfigError({ path, message: `${path}: ${message}` }))

/** The environment variable the file names at `path` (the file itself never holds a secret). */
export const readEnv = (name: string, path: string) =>
  Config.redacted(name).pipe(
    Effect.mapError(
      () => new GatewayConfigError({ path, message: `${path}: environment variable ${name} is not set` })
    )
  )
