/**
 * The upstream pool's two guards under overload (issue 14, Overload): when the gateway's own
 * process runs out of file descriptors, the pool is capped at the connections it has (calls queue
 * for them) instead of each failing on the key; and a key's 401 fails its attempts still queued
 * for a connection, so none of them is sent to a key known dead.
 */
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import type * as Undici from "undici"

/** A call waiting for a connection, failed when its key answers 401 meanwhile. */
export interface Queueable {
  failQueued(error: UpstreamError.UpstreamError): void
}

/** The calls of one key waiting in the pool's queue for a connection. */
export type Waiting = Set<Queueable>

/** Per key id, the calls waiting in the pool's queue for a connection. */
export type Queued = Map<string, Waiting>

/** Upstream connections per origin (the pool's cap; lowered for a while when the process is out of fds). */
export const POOL_SOCKETS = 256
/** How long an attempt waits before it sends again after the process ran out of fds. */
export const FD_RETRY_MS = 50
/** How long the pool stays capped at the sockets it had when the process ran out of fds. */
const FD_CAP_MS = 1_000

/** The gateway's own process is out of file descriptors: no key's fault, and no answer from anyone. */
export const outOfFds = (e: unknown) => {
  const code = (e as { code?: unknown })?.code
  return code === "EMFILE" || code === "ENFILE"
}

/**
 * Out of fds (a burst of callers holds them): cap the pool at the connections it has open, so calls
 * queue for those (the pool's own queue) instead of each failing to open one more; the cap lifts
 * after {@link FD_CAP_MS}, and drops again if fds are still short. undici's pool reads its limit
 * from a field it keeps under a symbol of its own (`connections`), at every call it places.
 */
export const capPool = (pool: Undici.Pool) => {
  const p = pool as unknown as Record<symbol, unknown> & { fdCap?: NodeJS.Timeout | undefined }
  const limit = Object.getOwnPropertySymbols(pool).find((s) => s.description === "connections")
  if (limit === undefined) return
  const open = pool.stats.connected
  p[limit] = Math.max(1, Math.min((p[limit] as number | null) ?? POOL_SOCKETS, open))
  if (p.fdCap !== undefined) return
  p.fdCap = setTimeout(() => {
    p.fdCap = undefined
    p[limit] = POOL_SOCKETS
  }, FD_CAP_MS).unref()
}

/** Puts `call` in its key's queue while it waits for a connection; the set returned is where it is. */
export const queue = (queued: Queued, keyId: string, call: Queueable): Waiting => {
  let waiting = queued.get(keyId)
  if (waiting === undefined) queued.set(keyId, (waiting = new Set()))
  waiting.add(call)
  return waiting
}

/** A 401 on `keyId`: its attempts not yet sent fail with it, and go on to another key. */
export const failQueued = (queued: Queued, keyId: string, error: UpstreamError.UpstreamError) => {
  const waiting = queued.get(keyId)
  if (waiting === undefined || waiting.size === 0) return
  const calls = [...waiting]
  waiting.clear()
  for (const call of calls) call.failQueued(error)
}
