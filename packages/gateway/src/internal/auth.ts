/**
 * The gateway token check: constant time in the token's content, and cheap on a keep-alive
 * connection that presents the header it was last accepted with.
 */
import * as crypto from "node:crypto"
import type { ClientConfig } from "../GatewayConfig.js"
import type { EngineState } from "./state.js"

// One-shot `crypto.hash` (Node ≥ 20.12) skips the Hash object per request; older 20.x fall back.
export const digest: (s: string) => Buffer =
  typeof crypto.hash === "function"
    ? (s) => crypto.hash("sha256", s, "buffer")
    : (s) => crypto.createHash("sha256").update(s).digest()

/**
 * The credentials of an `Authorization: Bearer …` header, else undefined. The scheme is
 * case-insensitive (RFC 9110 section 11.1): `bearer` and `BEARER` are the same.
 */
export const bearerToken = (header: string | undefined): string | undefined =>
  header !== undefined &&
  header.length > 7 &&
  header.charCodeAt(6) === 32 &&
  header.slice(0, 6).toLowerCase() === "bearer"
    ? header.slice(7).trim()
    : undefined

/** Constant time in the token's content: compare fixed-size digests, and always all of them. */
export const authorized = (engine: EngineState, header: string | undefined, connection: object): boolean => {
  if (engine.tokens.length === 0) return true
  const token = bearerToken(header)
  if (header === undefined || token === undefined) return false
  // A keep-alive client sends the same header on every request: once accepted on a connection,
  // it is accepted again without hashing (the digest showed in profiles). The comparison with the
  // accepted header takes time set by the presented header alone, so a connection shared by
  // several clients (a reverse proxy's) tells one nothing of another's token.
  const known = (connection as Connection)[ACCEPTED]
  if (known !== undefined && known.tokens === engine.tokens && sameText(header, known.header)) return true
  const presented = digest(token)
  let ok = false
  let match = -1
  for (let i = 0; i < engine.tokens.length; i++) {
    const same = crypto.timingSafeEqual(presented, engine.tokens[i]!)
    ok = same || ok
    match = same ? i : match
  }
  if (ok) {
    const client = engine.owners.length > 0 ? engine.owners[match] : undefined
    ;(connection as Connection)[ACCEPTED] = { tokens: engine.tokens, header, client }
  }
  return ok
}

/** The named client the connection's accepted token belongs to (undefined: a flat token, or no clients). */
export const clientOf = (engine: EngineState, connection: object): ClientConfig | undefined => {
  const known = (connection as Connection)[ACCEPTED]
  return known !== undefined && known.tokens === engine.tokens ? known.client : undefined
}

/**
 * What a connection was last accepted with, kept on the connection itself: it goes with the
 * socket. A WeakMap per engine kept its table at the peak number of connections for good (0.5 MB
 * after Overload's 10,000 at once; V8 does not shrink a WeakMap's table as entries are collected).
 * `tokens` names the configuration that accepted it (each engine has its own list), so a reload
 * checks the header again.
 */
interface Accepted {
  readonly tokens: ReadonlyArray<Buffer>
  readonly header: string
  readonly client: ClientConfig | undefined
}

const ACCEPTED = Symbol("accepted")

interface Connection {
  [ACCEPTED]?: Accepted
}

/** Equality in time that depends on `presented`'s length only: every character is compared. */
const sameText = (presented: string, known: string): boolean => {
  let diff = presented.length ^ known.length
  for (let i = 0; i < presented.length; i++)
    diff |= presented.charCodeAt(i) ^ known.charCodeAt(i % known.length)
  return diff === 0
}
