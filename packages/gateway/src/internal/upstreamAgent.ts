/**
 * The plain-HTTP upstream agent: Node's keep-alive `http.Agent`, with a shorter way through the
 * usual case, a free socket ready for the request. Node's `addRequest` first copies the request's
 * options and the agent's into a new object (a dozen properties, on every request) and gives the
 * reused socket a new async-hooks resource; together the most expensive step of an upstream call
 * in the CPU-bound bench's profile (agent.addRequest ~5 % of the gateway's CPU, more than the
 * whole balancer). Here a free socket is taken exactly as Node takes it (destroyed ones at the
 * head dropped, then the newest under `scheduling: "lifo"`, else the oldest) and handed to the request by the
 * agent's own public steps (`reuseSocket`, `onSocket`). Anything else (no free socket yet, a full
 * pool, its queue) goes through Node's own `addRequest` unchanged.
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

export class LeanAgent extends http.Agent {
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
        const agentTimeout = (this as unknown as { options: { timeout?: number } }).options.timeout ?? 0
        if (r.timeout !== undefined && r.timeout !== agentTimeout) socket.setTimeout(r.timeout)
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
