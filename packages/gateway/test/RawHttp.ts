/**
 * A raw HTTP/1.1 client over `node:net` for the gateway's property test: it writes exactly the
 * bytes of a {@link Plan} (malformed ones included), paces or cuts the body, and reads whatever comes
 * back until the server closes, the client cuts the answer, or a deadline passes.
 */
import * as net from "node:net"

/** How the request's body is delivered after the head. */
export type Delivery =
  | { readonly _tag: "Whole" }
  /** The body in pieces with a pause between them (a slow client). */
  | { readonly _tag: "Slow"; readonly pieces: number; readonly pauseMs: number }
  /** Part of the body, then a half-close: the declared length never arrives. */
  | { readonly _tag: "Truncated"; readonly keep: number }
  /** Part of the body, then the connection is destroyed. */
  | { readonly _tag: "AbortBody"; readonly keep: number }
  /** The whole request, then the connection is destroyed at the answer's first bytes. */
  | { readonly _tag: "AbortAnswer" }

export interface Plan {
  /** Request line and header lines, each ending in CRLF, without the blank line. */
  readonly head: Buffer
  readonly body: Buffer
  readonly delivery: Delivery
  /** Answers to wait for before the exchange is over (several for pipelined requests); default 1. */
  readonly expect?: number
}

export interface Result {
  /** How the exchange ended. `timeout`: neither an answer nor a close within the bound. */
  readonly end: "closed" | "client-cut" | "timeout"
  readonly ms: number
  readonly raw: Buffer
  /** The first answer's status, when its head arrived. */
  readonly status: number | undefined
  readonly headers: ReadonlyMap<string, string>
  /** The first answer's body, de-chunked, when complete. */
  readonly body: string | undefined
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Sends one request on its own connection and collects the answer (one request per connection). */
export const exchange = (port: number, plan: Plan, boundMs: number): Promise<Result> =>
  new Promise<Result>((resolve) => {
    const started = Date.now()
    const chunks: Array<Buffer> = []
    let done = false
    const socket = net.connect(port, "127.0.0.1")
    const finish = (end: Result["end"]) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const raw = Buffer.concat(chunks)
      resolve({ end, ms: Date.now() - started, raw, ...parse(raw) })
    }
    const timer = setTimeout(() => finish("timeout"), boundMs)
    socket.on("error", () => undefined) // a reset after an early answer (413) is a close
    socket.on("close", () => finish("closed"))
    socket.on("data", (c: Buffer) => {
      chunks.push(c)
      if (plan.delivery._tag === "AbortAnswer") finish("client-cut")
      // One request per connection: once a complete answer is in, the exchange is over.
      else if (answers(Buffer.concat(chunks)).length >= (plan.expect ?? 1)) finish("closed")
    })
    socket.once("connect", async () => {
      const write = (b: Buffer) => {
        if (!done && !socket.destroyed && b.length > 0) socket.write(b)
      }
      write(Buffer.concat([plan.head, Buffer.from("\r\n")]))
      const d = plan.delivery
      switch (d._tag) {
        case "Whole":
        case "AbortAnswer":
          return write(plan.body)
        case "Slow": {
          const size = Math.ceil(plan.body.length / d.pieces)
          for (let at = 0; at < plan.body.length && !done; at += size) {
            write(plan.body.subarray(at, at + size))
            await sleep(d.pauseMs)
          }
          return
        }
        case "Truncated":
          write(plan.body.subarray(0, Math.min(d.keep, Math.max(0, plan.body.length - 1))))
          await sleep(5)
          if (!done) socket.end()
          return
        case "AbortBody":
          write(plan.body.subarray(0, Math.min(d.keep, Math.max(0, plan.body.length - 1))))
          await sleep(5)
          return finish("client-cut")
      }
    })
  })

/** Every complete answer in `raw`, in order (a keep-alive connection carries several). */
export const answers = (raw: Buffer): Array<Pick<Result, "status" | "headers" | "body">> => {
  const out: Array<Pick<Result, "status" | "headers" | "body">> = []
  let rest = raw
  for (;;) {
    const a = parse(rest)
    if (a.body === undefined || a.next === undefined) return out
    out.push(a)
    rest = rest.subarray(a.next)
  }
}

const parse = (raw: Buffer): Pick<Result, "status" | "headers" | "body"> & { readonly next?: number } => {
  const headers = new Map<string, string>()
  const at = raw.indexOf("\r\n\r\n")
  if (at === -1) return { status: undefined, headers, body: undefined }
  const lines = raw.subarray(0, at).toString("latin1").split("\r\n")
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")
  for (const line of lines.slice(1)) {
    const c = line.indexOf(":")
    if (c > 0) headers.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim())
  }
  const status = m === null ? undefined : Number(m[1])
  const rest = raw.subarray(at + 4)
  const framed = bodyOf(status, headers, rest)
  return framed === undefined
    ? { status, headers, body: undefined }
    : { status, headers, body: framed.text, next: at + 4 + framed.length }
}

/** The complete body and the bytes it took, or `undefined` while it is still coming. */
const bodyOf = (
  status: number | undefined,
  headers: ReadonlyMap<string, string>,
  rest: Buffer
): { readonly text: string; readonly length: number } | undefined => {
  if (status === 204 || status === 304) return { text: "", length: 0 }
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
    const parts: Array<Buffer> = []
    let at = 0
    for (;;) {
      const eol = rest.indexOf("\r\n", at)
      if (eol === -1) return undefined
      const size = parseInt(rest.subarray(at, eol).toString("latin1"), 16)
      if (!Number.isFinite(size)) return undefined
      if (size === 0) {
        // The last chunk, then (no trailers) a blank line.
        if (rest.length < eol + 4) return undefined
        return { text: Buffer.concat(parts).toString("utf8"), length: eol + 4 }
      }
      if (rest.length < eol + 2 + size + 2) return undefined
      parts.push(rest.subarray(eol + 2, eol + 2 + size))
      at = eol + 2 + size + 2
    }
  }
  const length = headers.get("content-length")
  if (length !== undefined) {
    const n = Number(length)
    return rest.length >= n ? { text: rest.subarray(0, n).toString("utf8"), length: n } : undefined
  }
  // No framing: the body ends with the connection (the caller sees it once closed).
  return undefined
}

/** The body read to the close, for an answer with no framing (or a head-only answer). */
export const bodyToClose = (r: Result): string => {
  const at = r.raw.indexOf("\r\n\r\n")
  return at === -1 ? "" : r.raw.subarray(at + 4).toString("utf8")
}
