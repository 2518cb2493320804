/**
 * Reading an upstream 2xx before anything of it reaches the client, so that a bad one can still
 * fail over: a JSON answer is read whole and judged by `Protocol` (an HTML page or a body cut
 * short is the key's failure); a stream is read up to its first event, which may be an error
 * (OpenRouter documents that the error can be the first and only event of a 200 stream).
 */
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as http from "node:http"
import type { EngineState } from "./state.js"
import type { RequestContext } from "./upstream.js"

/** An answer ready to send: a whole body already judged a success, or a stream past its first event. */
export interface Answer {
  readonly _tag: "Answer"
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly response: http.IncomingMessage
  /** A whole body, or a stream's bytes so far (up to its first event), still to be sent. */
  readonly head: ReadonlyArray<Buffer>
  /** An event stream (else a body read whole, its verdict known). */
  readonly stream: boolean
  /** The body was read to its end: `head` is all of it. */
  readonly whole: boolean
  /** A whole JSON body's `usage.cost`. */
  readonly cost: number | undefined
}

/** How much of a body's end is read for its verdict (the final usage, an in-band error). */
export const TAIL = 4096

const ERROR = '"error"'

/** The most of a stream held back waiting for its first event. */
const MAX_HELD = 64 * 1024

/** The last `TAIL` bytes of a list of chunks, as text. */
export const tailOf = (chunks: ReadonlyArray<Buffer>): string => {
  if (chunks.length === 1) {
    const only = chunks[0]!
    return only.subarray(Math.max(0, only.length - TAIL)).toString("utf8")
  }
  const parts: Array<Buffer> = []
  let n = 0
  for (let i = chunks.length - 1; i >= 0 && n < TAIL; i--) {
    parts.unshift(chunks[i]!)
    n += chunks[i]!.length
  }
  const buf = Buffer.concat(parts)
  return buf.subarray(Math.max(0, buf.length - TAIL)).toString("utf8")
}

const ignore = () => undefined

/** Whether the text holds a whole first data event: a `data:` line and the line break ending it. */
const firstEventEnd = (text: string): number => {
  const at = text.startsWith("data:") ? 0 : text.indexOf("\ndata:")
  return at === -1 ? -1 : text.indexOf("\n", at + 1)
}

/**
 * Reads a 2xx as described above and calls one of `done` (the answer), `fail` (the key's failure:
 * a bad body or a first event that is an error) and `broken` (the body broke off), once.
 */
export const readAnswer = (
  engine: EngineState,
  ctx: RequestContext,
  status: number,
  res: http.IncomingMessage,
  done: (answer: Answer) => void,
  fail: (error: UpstreamError.UpstreamError) => void,
  broken: (e: unknown) => void
): void => {
  const headers = res.headers
  const kind = Protocol.kindOf(headers["content-type"])
  const chunks: Array<Buffer> = []
  let size = 0
  let text = ""
  // A stream handed on with what was read so far (`whole`: it has already ended).
  const streamed = (whole: boolean): Answer => ({
    _tag: "Answer",
    status,
    headers,
    response: res,
    head: chunks,
    stream: true,
    whole,
    cost: undefined
  })
  const onData = (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.length
    if (kind !== "sse") return
    // A stream: held until its first data event is whole, then judged by that event.
    text += chunk.toString("latin1")
    const end = firstEventEnd(text)
    if (end === -1) {
      // Keep-alives without end: past this much, the stream is passed on without the check.
      if (size <= MAX_HELD) return
      off()
      res.pause()
      res.on("error", ignore)
      return done(streamed(false))
    }
    off()
    res.pause()
    // Until the stream is taken over, an error must not go unheard (it would end the process).
    res.on("error", ignore)
    const first = text.slice(0, end + 1)
    const info = first.includes(ERROR)
      ? Protocol.streamError(Buffer.from(first, "latin1").toString("utf8"))
      : undefined
    if (info !== undefined) {
      res.destroy()
      return fail(
        Protocol.fromErrorObject(info, {
          now: engine.built.clock.unsafeCurrentTimeMillis(),
          model: ctx.model
        })
      )
    }
    done(streamed(false))
  }
  const onEnd = () => {
    off()
    if (kind === "sse") {
      // Ended before any event: passed on as it is, judged by the usual tail reading.
      return done(streamed(true))
    }
    const tail = tailOf(chunks)
    const whole =
      size <= TAIL ? tail : tail.includes(ERROR) ? Buffer.concat(chunks, size).toString("utf8") : undefined
    const verdict = Protocol.tailVerdict(status, headers, ctx.method === "POST", tail, whole, {
      now: engine.built.clock.unsafeCurrentTimeMillis(),
      model: ctx.model
    })
    if (verdict._tag === "Failure") return fail(verdict.error)
    done({
      _tag: "Answer",
      status,
      headers,
      response: res,
      head: chunks,
      stream: false,
      whole: true,
      cost: verdict.cost
    })
  }
  const onError = (e: unknown) => {
    off()
    broken(e)
  }
  const onClose = () => {
    if (!res.complete) onError(new Error("upstream closed the answer before its end"))
  }
  const off = () => {
    res.off("data", onData)
    res.off("end", onEnd)
    res.off("error", onError)
    res.off("close", onClose)
  }
  res.on("data", onData)
  res.on("end", onEnd)
  res.on("error", onError)
  res.on("close", onClose)
}
