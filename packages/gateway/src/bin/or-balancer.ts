#!/usr/bin/env node
/**
 * The `or-balancer` executable. Installed, it is `dist/bin/or-balancer.js`; in this repository,
 * `node packages/gateway/bin/or-balancer.js` runs this file from source in the same process.
 * Either way the process that was started is the server itself: `runMain` turns SIGINT/SIGTERM
 * into interruption, so the gateway drains before the process exits, and `serve` reloads on SIGHUP.
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
