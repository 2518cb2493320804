/**
 * `GET /dashboard`: the live status page, plain HTML and JS with no build step, which polls
 * `/status` and keeps its history in the browser. Its chart library (uPlot) is served from the
 * package's own dependency, so the page works offline. Everything under `/dashboard` needs the
 * admin token (see `auth.ts`); the page itself holds no data, only what `/status` answers.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import type * as http from "node:http"
import { createRequire } from "node:module"
import type { TLSSocket } from "node:tls"
import { fileURLToPath } from "node:url"
import * as Auth from "./auth.js"

export const PATH = "/dashboard"
const ASSETS = `${PATH}/assets/`

/** Whether a request path is the dashboard's (the page or one of its assets). */
export const owns = (path: string): boolean => path === PATH || path.startsWith(ASSETS)

interface Asset {
  readonly type: string
  readonly file: string
}

const here = (name: string) => fileURLToPath(new URL(`../../../assets/dashboard/${name}`, import.meta.url))
const require = createRequire(import.meta.url)

const JS = "text/javascript; charset=utf-8"
const CSS = "text/css; charset=utf-8"
/** Everything the page loads: its own modules and stylesheet, and uPlot from the package's dependency. */
const files: Record<string, Asset> = {
  "app.css": { type: CSS, file: here("app.css") },
  ...Object.fromEntries(
    ["app", "charts", "format", "history", "sparkline", "tables"].map((m) => [
      `${m}.js`,
      { type: JS, file: here(`${m}.js`) }
    ])
  ),
  "uplot.js": { type: JS, file: require.resolve("uplot/dist/uPlot.iife.min.js") },
  "uplot.css": { type: CSS, file: require.resolve("uplot/dist/uPlot.min.css") }
}
const PAGE: Asset = { type: "text/html; charset=utf-8", file: here("index.html") }

interface Loaded {
  readonly body: Buffer
  readonly etag: string
}

// Read once, on first use: the files are small and never change while the process runs.
const loaded = new Map<string, Loaded>()
const load = (asset: Asset, done: (err: Error | null, file?: Loaded) => void) => {
  const hit = loaded.get(asset.file)
  if (hit !== undefined) return done(null, hit)
  fs.readFile(asset.file, (err, body) => {
    if (err !== null) return done(err)
    const file = {
      body,
      etag: `"${crypto.createHash("sha256").update(body).digest("base64url").slice(0, 16)}"`
    }
    loaded.set(asset.file, file)
    done(null, file)
  })
}

/** The page may load only its own scripts and styles and talk only to its own origin. */
const SECURITY = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY"
}

const send = (res: http.ServerResponse, status: number, headers: Record<string, string>, body = "") => {
  if (res.headersSent || res.destroyed) return
  res.writeHead(status, { ...SECURITY, "content-length": Buffer.byteLength(body), ...headers })
  res.end(body)
}

const unauthorized = (res: http.ServerResponse) =>
  send(
    res,
    401,
    { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    "401 Unauthorized: open /dashboard?token=<admin token> once; a cookie keeps you signed in.\n"
  )

const serve = (req: http.IncomingMessage, res: http.ServerResponse, asset: Asset, cache: string) =>
  load(asset, (err, file) => {
    if (err !== null || file === undefined) {
      return send(res, 500, { "content-type": "text/plain; charset=utf-8" }, "dashboard asset missing\n")
    }
    const headers = { "content-type": asset.type, "cache-control": cache, etag: file.etag }
    if (req.headers["if-none-match"] === file.etag) return send(res, 304, headers)
    if (res.headersSent || res.destroyed) return
    res.writeHead(200, { ...SECURITY, ...headers, "content-length": file.body.length })
    res.end(file.body)
  })

/**
 * Answers a request whose path {@link owns}. `?token=` with an admin token sets the cookie and
 * redirects (303) to the clean URL, so the token leaves the address bar; a wrong one is a 401.
 */
export const handle = (req: http.IncomingMessage, res: http.ServerResponse, auth: Auth.AdminAuth): void => {
  const url = new URL(req.url ?? "/", "http://gateway")
  if (req.method !== "GET")
    return send(res, 405, { allow: "GET", "content-type": "text/plain" }, "GET only\n")
  if (url.pathname === PATH && url.searchParams.has("token")) {
    const token = url.searchParams.get("token") ?? ""
    if (!auth.open && !auth.token(token)) return unauthorized(res)
    url.searchParams.delete("token")
    // Relative, so the redirect also works behind a proxy that mounts the gateway under a prefix.
    const location = `dashboard${url.search}`
    const secure = (req.socket as TLSSocket).encrypted === true
    return send(res, 303, {
      location,
      "cache-control": "no-store",
      ...(auth.open ? {} : { "set-cookie": Auth.setCookie(auth, token, secure) })
    })
  }
  if (!Auth.allowed(req, auth)) return unauthorized(res)
  if (url.pathname === PATH) return serve(req, res, PAGE, "no-store")
  const asset = Object.hasOwn(files, url.pathname.slice(ASSETS.length))
    ? files[url.pathname.slice(ASSETS.length)]
    : undefined
  if (asset === undefined)
    return send(res, 404, { "content-type": "text/plain" }, "no such dashboard asset\n")
  return serve(req, res, asset, "private, no-cache")
}
