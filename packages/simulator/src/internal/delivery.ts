/**
 * Writing an answer's bytes: whole, as SSE events spaced in time, or trickled (`slow`). Each
 * calls `done` once the last byte is written; a client that went away stops the writing.
 */
import type * as http from "node:http"
import type { Failure } from "./inference.js"
import type { Sim } from "./state.js"
import type { Headers } from "./wire.js"

export const SSE_HEADERS: Headers = { "content-type": "text/event-stream", "cache-control": "no-cache" }

/** Writes `parts` in order, `intervalMs` apart (or trickled when `slow`), then calls `done`. */
export const deliver = (
  sim: Sim,
  res: http.ServerResponse,
  headers: Headers,
  parts: ReadonlyArray<string>,
  intervalMs: number,
  slow: boolean,
  done: () => void
): void => {
  if (slow) {
    const { slowBytes, slowIntervalMs } = sim.settings
    const bytes = Buffer.from(parts.join(""), "utf8")
    res.writeHead(200, { ...headers, "content-length": bytes.length })
    let offset = 0
    const step = (): void => {
      if (res.destroyed) return
      const end = Math.min(offset + slowBytes, bytes.length)
      if (end >= bytes.length) {
        res.end(bytes.subarray(offset))
        done()
        return
      }
      res.write(bytes.subarray(offset, end))
      offset = end
      setTimeout(step, slowIntervalMs)
    }
    step()
    return
  }
  if (intervalMs <= 0 || parts.length === 1) {
    const body = parts.length === 1 ? parts[0]! : parts.join("")
    res.writeHead(200, { ...headers, "content-length": Buffer.byteLength(body) })
    res.end(body)
    done()
    return
  }
  res.writeHead(200, headers)
  let i = 0
  const step = (): void => {
    if (res.destroyed) return
    if (i === parts.length - 1) {
      res.end(parts[i])
      done()
      return
    }
    res.write(parts[i++])
    setTimeout(step, intervalMs)
  }
  step()
}

/**
 * Delivers a streamed answer: billed when it ends well; a stream that fails in-band is not
 * billed, and one that is `cut` loses its connection after the parts, with no error event and
 * no end of stream, as when a provider's connection drops.
 */
export const deliverStream = (
  sim: Sim,
  res: http.ServerResponse,
  headers: Headers,
  parts: ReadonlyArray<string>,
  slow: boolean,
  failure: Failure,
  bill: () => void
): void => {
  if (failure !== "cut")
    return deliver(
      sim,
      res,
      headers,
      parts,
      sim.settings.chunkIntervalMs,
      slow,
      failure === "none" ? bill : noop
    )
  res.writeHead(200, headers)
  res.write(parts.join(""), () => res.socket?.destroy())
}

const noop = (): void => {}

/** Splits `content` into at most `chunks` pieces of equal length (the last may be shorter). */
export const pieces = (content: string, chunks: number): Array<string> => {
  const length = Math.max(1, Math.ceil(content.length / chunks))
  const out: Array<string> = []
  for (let i = 0; i * length < content.length; i++) out.push(content.slice(i * length, (i + 1) * length))
  return out
}
