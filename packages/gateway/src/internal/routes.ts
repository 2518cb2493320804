/**
 * The gateway's routes: which path and method is which route, and what a wrong method on a known
 * path is allowed (a 405 names it). Every client route is served under `/v1` and, as OpenRouter's
 * own base URL has it, `/api/v1`.
 */
import * as Dashboard from "./dashboard/handler.js"
import type { AdminRoute } from "./admin.js"

/** A balanced POST route: its body is a JSON object with a model, forwarded with a key. */
export interface Inference {
  readonly _tag: "Inference"
  /** The path under the upstream's base URL. */
  readonly suffix: string
}

/** The public model list or one model: forwarded with no key. */
export interface Models {
  readonly _tag: "Models"
  readonly suffix: string
}

/** `GET /generation?id=`: needs a key of the account that made it. */
export interface Generation {
  readonly _tag: "Generation"
}

export interface Admin {
  readonly _tag: "Admin"
  readonly route: AdminRoute
}

export interface DashboardRoute {
  readonly _tag: "Dashboard"
}

/** A known path asked with a method it does not take. */
export interface WrongMethod {
  readonly _tag: "WrongMethod"
  /** The `Allow` header's value. */
  readonly allow: string
}

export type Route = Inference | Models | Generation | Admin | DashboardRoute | WrongMethod

const INFERENCE: Readonly<Record<string, Inference>> = {
  "/chat/completions": { _tag: "Inference", suffix: "/chat/completions" },
  "/completions": { _tag: "Inference", suffix: "/completions" },
  "/embeddings": { _tag: "Inference", suffix: "/embeddings" },
  "/responses": { _tag: "Inference", suffix: "/responses" }
}

const ADMIN: Readonly<Record<string, Admin>> = {
  "/healthz": { _tag: "Admin", route: "healthz" },
  "/metrics": { _tag: "Admin", route: "metrics" },
  "/status": { _tag: "Admin", route: "status" }
}

const GENERATION: Generation = { _tag: "Generation" }
const DASHBOARD: DashboardRoute = { _tag: "Dashboard" }
const POST_ONLY: WrongMethod = { _tag: "WrongMethod", allow: "POST" }
const GET_ONLY: WrongMethod = { _tag: "WrongMethod", allow: "GET, HEAD" }

/** The path under `/v1` or `/api/v1`, else `undefined`. */
const apiPath = (path: string): string | undefined =>
  path.startsWith("/v1/") ? path.slice(3) : path.startsWith("/api/v1/") ? path.slice(7) : undefined

/** A `.` or `..` segment: an upstream might resolve it to another of its routes. */
const DOT_SEGMENT = /\/\.\.?(\/|$)/

const isGet = (method: string | undefined) => method === "GET" || method === "HEAD"

/** The route of a request, or `undefined` for an unknown path (a 404). */
export const routeOf = (method: string | undefined, path: string): Route | undefined => {
  const admin = ADMIN[path]
  if (admin !== undefined) {
    // A load balancer's health check may be a HEAD (Node sends the head without the body).
    if (method === "GET" || (method === "HEAD" && admin.route === "healthz")) return admin
    return admin.route === "healthz" ? GET_ONLY : { _tag: "WrongMethod", allow: "GET" }
  }
  const api = apiPath(path)
  if (api !== undefined) {
    const inference = INFERENCE[api]
    if (inference !== undefined) return method === "POST" ? inference : POST_ONLY
    if (api === "/models" || (api.startsWith("/models/") && api.length > 8 && !DOT_SEGMENT.test(api)))
      return isGet(method) ? { _tag: "Models", suffix: api } : GET_ONLY
    if (api === "/generation") return isGet(method) ? GENERATION : GET_ONLY
    return undefined
  }
  if (Dashboard.owns(path)) return method === "GET" ? DASHBOARD : { _tag: "WrongMethod", allow: "GET" }
  return undefined
}
