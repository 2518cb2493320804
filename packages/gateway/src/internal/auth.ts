/**
 * The gateway token check: constant time in the token's content, and cheap on a keep-alive
 * connection that presents the header it was last accepted with.
 */
import * as crypto from "node:crypto"
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
  const known = engine.accepted.get(connection)
  if (known !== undefined && sameText(header, known)) return true
  const presented = digest(token)
  let ok = false
  for (const t of engine.tokens) ok = crypto.timingSafeEqual(presented, t) || ok
  if (ok) engine.accepted.set(connection, header)
  return ok
}

/** Equality in time that depends on `presented`'s length only: every character is compared. */
const sameText = (presented: string, known: string): boolean => {
  let diff = presented.length ^ known.length
  for (let i = 0; i < presented.length; i++)
    diff |= presented.charCodeAt(i) ^ known.charCodeAt(i % known.length)
  return diff === 0
}
