/**
 * The `or-balancer` executable: `npx tsx packages/gateway/src/bin/or-balancer.ts serve --config gw.json`.
 * `runMain` turns SIGINT/SIGTERM into interruption, so the gateway drains before the process exits;
 * `Cli.main` prints a failure as one line and `Cli.teardown` gives its exit code (2 for a usage or
 * config mistake, 1 otherwise).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "../Cli.js"

Cli.main(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, teardown: Cli.teardown })
)
