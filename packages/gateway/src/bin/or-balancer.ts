/**
 * The `or-balancer` executable: `npx tsx packages/gateway/src/bin/or-balancer.ts serve --config gw.json`.
 * `runMain` turns SIGINT/SIGTERM into interruption, so the gateway drains before the process exits,
 * and a failure (a bad config, a bad key in `check`) into a non-zero exit code.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "../Cli.js"

Cli.run(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: false })
)
