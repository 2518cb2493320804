// One caller's request through the gateway in the scenarios bench (see `../scenarios.ts`): its status,
// the failure's reason, and where a reset happened.
import * as http from "node:http"
import type * as net from "node:net"
import { performance } from "node:perf_hooks"

export const TOKEN = "scenario-token"

export interface Answer {
  readonly status: number | "reset" | "unfinished"
  readonly reason: string
  readonly ms: number
  /** A 504 at the request deadline: whether any key was tried (none: no key became eligible in time). */
  readonly tried?: boolean
}

/** One request through the gateway; never rejects. */
export const call = (agent: http.Agent, url: URL, body: string, deadline: number): Promise<Answer> =>
  new Promise((resolve) => {
    const start = performance.now()
    let done = false
    const finish = (a: Omit<Answer, "ms">) => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve({ ...a, ms: performance.now() - start })
    }
    let connected = false
    let answered = false
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        headers: {
          authorization: `Bearer ${TOKEN}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body)
        }
      },
      (res) => {
        answered = true
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => {
          const status = res.statusCode ?? 0
          let reason = ""
          let tried: boolean | undefined
          if (status !== 200) {
            try {
              const e = JSON.parse(Buffer.concat(chunks).toString("utf8")).error ?? {}
              reason = String(e.metadata?.reason ?? e.metadata?.error_type ?? e.type ?? e.message ?? "")
              if (Array.isArray(e.metadata?.attempts)) tried = e.metadata.attempts.length > 0
            } catch {
              reason = "unparsable"
            }
          }
          finish(tried === undefined ? { status, reason } : { status, reason, tried })
        })
        res.on("error", () => finish({ status: "reset", reason: "response aborted" }))
      }
    )
    const timer = setTimeout(
      () => {
        finish({ status: "unfinished", reason: "" })
        req.destroy()
      },
      Math.max(0, deadline - performance.now())
    )
    req.on("socket", (s: net.Socket) => {
      if (s.remotePort !== undefined) connected = true
      else s.once("connect", () => (connected = true))
    })
    // Where a reset happened says which side closed: before the connection was established
    // (the listen queue), or after (the gateway's process, or this one's agent).
    req.on("error", (e: NodeJS.ErrnoException) =>
      finish({
        status: "reset",
        reason: `${e.code ?? e.message} ${!connected ? "connecting" : answered ? "in response" : "awaiting response"}`
      })
    )
    req.end(body)
  })
