// What the scenarios bench watches in the gateway's process (see `../scenarios.ts`): its heap and
// open-files limit, new upstream sockets, its callers' connections, and attempts on revoked keys.
import * as diagnostics from "node:diagnostics_channel"
import * as fs from "node:fs"
import type * as http from "node:http"
import type * as net from "node:net"
import * as v8 from "node:v8"

/** With `SCENARIO_HEAP_SNAPSHOTS=<dir>`: heap snapshots of the gateway's process, idle before and after. */
export const snapshot = (when: string) => {
  const dir = process.env.SCENARIO_HEAP_SNAPSHOTS
  if (dir !== undefined) v8.writeHeapSnapshot(`${dir}/${when}.heapsnapshot`)
}
export const mb = (bytes: number) => Number((bytes / 1048576).toFixed(1))
export const heap = async () => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    await new Promise((r) => setTimeout(r, 50))
    gc()
  }
  return process.memoryUsage().heapUsed
}
/** This process's open-files limit (Linux), which a forked child inherits. */
export const fdLimit = (): number | undefined => {
  try {
    const line = fs
      .readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"))
    const n = Number(line?.split(/\s+/)[3])
    return Number.isFinite(n) ? n : undefined
  } catch {
    return undefined
  }
}
export const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

/** Counts sockets this process connects to `port`. */
export const socketCounter = (port: number) => {
  let count = 0
  const onSocket = (message: unknown) => {
    const socket = (message as { socket: net.Socket }).socket
    socket.once("connect", () => {
      if (socket.remotePort === port) count++
    })
  }
  diagnostics.subscribe("net.client.socket", onSocket)
  return { count: () => count, stop: () => diagnostics.unsubscribe("net.client.socket", onSocket) }
}

/** What the gateway's side saw of its callers' connections: accepted, errors by code, and the process's peak fds. */
export interface CallerSockets {
  readonly accepted: number
  readonly errors: Readonly<Record<string, number>>
  readonly peakFds: number
}

/** Counts the connections this process accepts on `port`, their errors, and the peak of open fds. */
export const callerSockets = (port: number) => {
  let accepted = 0
  let peakFds = 0
  const errors: Record<string, number> = {}
  const onSocket = (message: unknown) => {
    const socket = (message as { socket: net.Socket }).socket
    if (socket.localPort !== port) return
    accepted++
    socket.on("error", (e: NodeJS.ErrnoException) => {
      const code = e.code ?? e.message
      errors[code] = (errors[code] ?? 0) + 1
    })
  }
  const fds = () => {
    try {
      peakFds = Math.max(peakFds, fs.readdirSync("/proc/self/fd").length)
    } catch {
      // not Linux: no fd count
    }
  }
  const timer = setInterval(fds, 100)
  diagnostics.subscribe("net.server.socket", onSocket)
  return {
    read: (): CallerSockets => ({ accepted, errors: { ...errors }, peakFds }),
    stop: () => {
      clearInterval(timer)
      diagnostics.unsubscribe("net.server.socket", onSocket)
    }
  }
}

/**
 * Issue 14 item 3, seen from the gateway's process: per revoked key, the upstream attempts started
 * on it, those in flight when its first 401 had been read, and those started after (0 when the
 * first 401 closes the key: only attempts already in flight may still reach it).
 */
export interface RevokedAttempts {
  readonly started: number
  readonly inFlightAtFirst401: number | null
  readonly startedAfterFirst401: number
}

/** Watches this process's upstream requests whose head carries one of `secrets` (label by secret). */
export const revokedAttempts = (secrets: ReadonlyMap<string, string>) => {
  const seen = new Map<string, { started: number; ended: number; atFirst: number | null; after: number }>()
  const onStart = (message: unknown) => {
    const request = (message as { request: http.ClientRequest & { _header?: string } }).request
    const auth = /authorization: Bearer (\S+)/i.exec(request._header ?? "")?.[1]
    const label = auth === undefined ? undefined : secrets.get(auth)
    if (label === undefined) return
    let k = seen.get(label)
    if (k === undefined) seen.set(label, (k = { started: 0, ended: 0, atFirst: null, after: 0 }))
    const s = k
    s.started++
    if (s.atFirst !== null) s.after++
    let counted = false
    const end = (status: number | undefined) => {
      if (counted) return
      counted = true
      // In flight at the first 401: started, not ended, this one included.
      if (status === 401 && s.atFirst === null) s.atFirst = s.started - s.ended
      s.ended++
    }
    request.once("response", (res) => res.once("end", () => end(res.statusCode)))
    request.once("close", () => end(undefined))
  }
  diagnostics.subscribe("http.client.request.start", onStart)
  return {
    read: (): Record<string, RevokedAttempts> =>
      Object.fromEntries(
        [...seen].map(([label, k]) => [
          label,
          { started: k.started, inFlightAtFirst401: k.atFirst, startedAfterFirst401: k.after }
        ])
      ),
    stop: () => diagnostics.unsubscribe("http.client.request.start", onStart)
  }
}
