/**
 * The admin token a browser can present: `/dashboard?token=…` trades it for a cookie, and the
 * cookie (or `Authorization: Bearer <admin token>`, for scrapers) opens the dashboard and, when the
 * config says so, `/status` and `/metrics`.
 *
 * The cookie holds a value derived from the token, not the token: the admin tokens default to the
 * gateway tokens, which can spend money, and a browser's cookie jar is no place for those. The
 * derivation is deterministic, so a cookie survives a restart and works on every replica that
 * shares the token; rotating the token revokes it. Every comparison is of fixed-size digests, against
 * every configured value, so it takes the same time whatever is presented.
 */
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import type * as http from "node:http"
import type * as GatewayConfig from "../../GatewayConfig.js"
import { bearerToken } from "../auth.js"

/** The cookie's name. */
export const COOKIE = "or_balancer_admin"

export interface AdminAuth {
  /** No admin token is configured (an anonymous gateway): the dashboard is open. */
  readonly open: boolean
  /** Whether `presented` is one of the admin tokens. */
  readonly token: (presented: string) => boolean
  /** Whether `presented` is the cookie value of one of the admin tokens. */
  readonly cookie: (presented: string) => boolean
  /** The cookie value for a token (call it with an accepted token only). */
  readonly cookieFor: (token: string) => string
}

const digest = (s: string): Buffer => crypto.createHash("sha256").update(s).digest()

/** Domain-separated, so the cookie value is no hash of the token that another system might also use. */
const cookieValueOf = (token: string): string =>
  crypto.createHmac("sha256", "or-balancer/dashboard-cookie/v1").update(token).digest("base64url")

/** True when `presented`'s digest equals one of `known`; compares against all of them every time. */
const matchesAny = (known: ReadonlyArray<Buffer>, presented: string): boolean => {
  const d = digest(presented)
  let ok = false
  for (const k of known) ok = crypto.timingSafeEqual(d, k) || ok
  return ok
}

export const make = (tokens: ReadonlyArray<Redacted.Redacted<string>>): AdminAuth => {
  const tokenDigests = tokens.map((t) => digest(Redacted.value(t)))
  const cookieDigests = tokens.map((t) => digest(cookieValueOf(Redacted.value(t))))
  return {
    open: tokens.length === 0,
    token: (presented) => matchesAny(tokenDigests, presented),
    cookie: (presented) => matchesAny(cookieDigests, presented),
    cookieFor: cookieValueOf
  }
}

const byConfig = new WeakMap<GatewayConfig.GatewayConfig, AdminAuth>()

/** The config's admin auth, built once per configuration (a reload brings a new one). */
export const of = (config: GatewayConfig.GatewayConfig): AdminAuth => {
  let auth = byConfig.get(config)
  if (auth === undefined) {
    auth = make(config.admin.tokens)
    byConfig.set(config, auth)
  }
  return auth
}

/** Every value of the named cookie in a `Cookie` header (a browser may send several). */
export const cookieValues = (header: string | undefined, name: string = COOKIE): Array<string> => {
  const out: Array<string> = []
  if (header === undefined) return out
  for (const part of header.split(";")) {
    const eq = part.indexOf("=")
    if (eq !== -1 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim())
  }
  return out
}

/** Whether the request carries the admin cookie or an admin bearer token. */
export const allowed = (req: http.IncomingMessage, auth: AdminAuth): boolean => {
  if (auth.open) return true
  const token = bearerToken(req.headers.authorization)
  if (token !== undefined && auth.token(token)) return true
  let ok = false
  for (const value of cookieValues(req.headers.cookie)) ok = auth.cookie(value) || ok
  return ok
}

/** The `Set-Cookie` header for an accepted token: HttpOnly, SameSite=Strict, whole site, for the session. */
export const setCookie = (auth: AdminAuth, token: string, secure: boolean): string =>
  `${COOKIE}=${auth.cookieFor(token)}; Path=/; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}`
