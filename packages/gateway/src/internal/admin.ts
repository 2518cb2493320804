/**
 * The admin endpoints: `/healthz` answered at once; `/metrics` and `/status` run as Effect
 * programs on the engine's runtime (speed does not matter there).
 */
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as http from "node:http"
import { openAiError, sendJson } from "./respond.js"
import type { ServerState } from "./state.js"

export interface Admin {
  readonly metrics: Effect.Effect<string>
  readonly status: Effect.Effect<unknown>
}

export type AdminRoute = "healthz" | "metrics" | "status"

export const serveAdmin = (
  state: ServerState,
  admin: Admin,
  route: AdminRoute,
  res: http.ServerResponse
): void => {
  if (route === "healthz") {
    return sendJson(res, state.draining ? 503 : 200, { status: state.draining ? "draining" : "ok" })
  }
  state.engine.fork(route === "metrics" ? admin.metrics : admin.status).addObserver((exit) => {
    if (Exit.isFailure(exit)) return openAiError(res, 500, "internal error", "server_error", null)
    if (route === "metrics") {
      const text = exit.value as string
      res.writeHead(200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "content-length": Buffer.byteLength(text)
      })
      res.end(text)
    } else {
      sendJson(res, 200, exit.value)
    }
  })
}
