/**
 * The plain-HTTP upstream agent of the routes passed through as they are (`passthrough.ts`; the
 * balanced calls go through undici, `upstreamCall.ts`): Node's keep-alive `http.Agent`, with a shorter way through the
 * usual case, a free socket ready for the request. Node's `addRequest` first copies the request's
 * options and the agent's into a new object (a dozen properties, on every request) and gives the
 * reused socket a new async-hooks resource; together the most expensive step of an upstream call
 * in the CPU-bound bench's profile (agent.addRequest ~5 % of the gateway's CPU, more than the
 * whole balancer). Here a free socket is taken exactly as Node takes it (destroyed ones at the
 * head dropped, then the newest under `scheduling: "lifo"`, else the oldest) and handed to the request by the
 * agent's own public steps (`reuseSocket`, `onSocket`). Anything else (no free socket yet, a full
 * pool, its queue) goes through Node's own `addRequest` unchanged.
 *
 * A socket given back is kept as Node keeps it (`keepSocketAlive`), reading the upstream's
 * `Keep-Alive: timeout=N` hint from the answer's raw header list: Node reads it from
 * `res.headers`, which builds the whole header object of every answer (~1.4 % of the gateway's
 * CPU in the bench's profile) that the gateway otherwise never reads for a success.
 *
 * What differs: a reused socket keeps the async-hooks resource it was opened with. The gateway
 * keeps no async context (`AsyncLocalStorage`) across an upstream call; Effect's tracing does
 * not use one. Plain HTTP only: an `https.Agent` names its pools by TLS options as well.
 */
import * as http from "node:http"
import type * as net from "node:net"

/** What of a `ClientRequest` the agent's steps use (Node's own API, untyped in @types/node). */
interface AgentRequest {
  reusedSocket?: boolean
  readonly timeout?: number | undefined
  onSocket(socket: net.Socket): void
}

type Pools = Record<string, Array<net.Socket> | undefined>

/** Node's margin under the server's announced keep-alive timeout (`HTTP_AGENT_KEEP_ALIVE_TIMEOUT_BUFFER`). */
const HINT_MARGIN_MS = 1000

const HINT = /^timeout=(\d+)/

/** The first `Keep-Alive` header's value in a raw header list (Node's object keeps the first's start too). */
const keepAliveHint = (raw: ReadonlyArray<string>): string | undefined => {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    // Compared without lowercasing every name: only a 10-letter name can be it.
    if (name.length === 10 && name.toLowerCase() === "keep-alive") return raw[i + 1]
  }
  return undefined
}

export class LeanAgent extends http.Agent {
  private lastHost: unknown = undefined
  private lastPort: unknown = undefined
  private lastName: string | undefined = undefined

  /**
   * Node's pool name (`host:port:`), kept while host and port stay the same: Node builds it anew
   * three times per call (taking the socket, freeing it, taking it off the busy list), and each new
   * string is hashed again to look up the agent's pools.
   */
  override getName(options?: http.ClientRequestArgs): string {
    if (
      options === undefined ||
      options.localAddress !== undefined ||
      options.family !== undefined ||
      options.socketPath !== undefined
    )
      return super.getName(options)
    if (this.lastName === undefined || options.host !== this.lastHost || options.port !== this.lastPort) {
      this.lastName = super.getName(options)
      this.lastHost = options.host
      this.lastPort = options.port
    }
    return this.lastName
  }

  /** The agent's own socket timeout, as Node's steps read it (0: none). */
  private get agentTimeout(): number {
    return (this as unknown as { options: { timeout?: number } }).options.timeout || 0
  }

  /** Node's `keepSocketAlive`, the hint read from the raw header list. */
  override keepSocketAlive(socket: net.Socket): boolean {
    // Node caches the option: a socket already set this way makes no system call.
    socket.setKeepAlive(true, (this as unknown as { keepAliveMsecs: number }).keepAliveMsecs)
    socket.unref()
    let agentTimeout = this.agentTimeout
    let keep = true
    const res = (socket as unknown as { _httpMessage?: { res?: http.IncomingMessage } })._httpMessage?.res
    const hint = res === undefined ? undefined : keepAliveHint(res.rawHeaders)
    const seconds = hint === undefined ? undefined : HINT.exec(hint)?.[1]
    if (seconds !== undefined) {
      // Let the socket expire before the server's announced timeout (fewer ECONNRESETs).
      const ms = Math.max(0, Number.parseInt(seconds, 10) * 1000 - HINT_MARGIN_MS)
      if (ms === 0)
        keep = false // the server's timeout is too short to reuse the socket safely
      else if (ms < agentTimeout) agentTimeout = ms
    }
    if (socket.timeout !== agentTimeout) socket.setTimeout(agentTimeout)
    return keep
  }

  addRequest(req: http.ClientRequest, options: http.ClientRequestArgs): void {
    // The pool's name as Node's own `addRequest` names it (`host:port:localAddress`); the
    // agent's options, merged in there, hold none of the fields it is made of.
    const name = this.getName(options)
    const free = (this.freeSockets as Pools)[name]
    if (free !== undefined) {
      while (free.length > 0 && free[0]!.destroyed) free.shift()
      const fifo = (this as unknown as { scheduling: string }).scheduling === "fifo"
      const socket = fifo ? free.shift() : free.pop()
      if (free.length === 0) delete (this.freeSockets as Pools)[name]
      if (socket !== undefined) {
        this.reuseSocket(socket, req)
        const r = req as unknown as AgentRequest
        r.onSocket(socket)
        // As Node's `setRequestSocket`: a request's own timeout other than the agent's is set on the socket.
        if (r.timeout !== undefined && r.timeout !== this.agentTimeout) socket.setTimeout(r.timeout)
        const sockets = this.sockets as Pools
        ;(sockets[name] ??= []).push(socket)
        return
      }
    }
    ;(http.Agent.prototype as unknown as { addRequest: LeanAgent["addRequest"] }).addRequest.call(
      this,
      req,
      options
    )
  }
}
