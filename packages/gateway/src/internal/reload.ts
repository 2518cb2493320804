/**
 * `serve`'s reloads: on `SIGHUP` and on a change to the config file, one debounced trigger for
 * both, and a report of what a reload cannot change (the listen address).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Gateway from "../Gateway.js"
import type * as GatewayConfig from "../GatewayConfig.js"

/** Triggers (file events, SIGHUP) closer together than this make one reload. */
const RELOAD_DEBOUNCE_MS = 200

/** Reloads `gateway` from `load` on SIGHUP and on changes to `path`, until the scope closes. */
export const onChange = (
  path: string,
  config: GatewayConfig.GatewayConfig,
  gateway: Gateway.Gateway,
  load: Effect.Effect<GatewayConfig.GatewayConfig, { readonly message: string }, FileSystem.FileSystem>
): Effect.Effect<void, never, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<FileSystem.FileSystem>()
    // The listen address cannot move without a restart: a change is reported, not ignored.
    const listenChange = (next: GatewayConfig.GatewayConfig) =>
      next.host === config.host && next.port === config.port
        ? Effect.void
        : Console.error(
            `warning: listen ${next.host}:${next.port} in ${path} takes effect only on a restart; ` +
              `still listening on ${gateway.url}`
          )
    const reload = load.pipe(
      Effect.tap(gateway.reload),
      Effect.tap(listenChange),
      Effect.zipRight(Console.log(`reloaded ${path}`)),
      Effect.catchAll((e) => Console.error(`reload failed, keeping the running configuration: ${e.message}`))
    )
    // SIGHUP and file changes share one debounce: one edit (an editor's several events, or a
    // save followed by a SIGHUP) reloads once, 200 ms after the last trigger.
    let pending: ReturnType<typeof setTimeout> | undefined
    const trigger = () => {
      clearTimeout(pending)
      pending = setTimeout(() => void Runtime.runFork(runtime)(reload), RELOAD_DEBOUNCE_MS)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", trigger)),
      () =>
        Effect.sync(() => {
          process.off("SIGHUP", trigger)
          clearTimeout(pending)
        })
    )
    // A change to the file reloads it too. The directory is watched, not the file, so an editor
    // that saves by renaming a new file over the old one is seen. (Also the way to reload under
    // `tsx`'s CLI, which does not pass SIGHUP on to the program.)
    const fs = yield* FileSystem.FileSystem
    const paths = yield* Path.Path
    const name = paths.basename(path)
    yield* fs.watch(paths.dirname(paths.resolve(path))).pipe(
      Stream.filter((event) => paths.basename(event.path) === name),
      Stream.runForEach(() => Effect.sync(trigger)),
      Effect.catchAll((e) => Console.error(`not watching ${path} for changes: ${e.message}`)),
      Effect.forkScoped
    )
  })
