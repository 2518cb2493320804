#!/usr/bin/env node
// The `or-balancer` command inside this repository: `node packages/gateway/bin/or-balancer.js serve -c gw.json`.
// It runs the TypeScript sources in this very process (tsx's loader, registered in-process), so the
// process you started is the server: SIGTERM drains it, SIGHUP reloads it, and relative paths are
// resolved from your current folder. No package-manager wrapper sits in between to swallow a signal
// or orphan the server. The published package's `bin` is the compiled `dist/bin/or-balancer.js`.
import { register } from "tsx/esm/api"

register()
await import("../src/bin/or-balancer.ts")
