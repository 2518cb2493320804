/**
 * Reading an upstream 2xx before anything of it reaches the client, so that a bad one can still
 * fail over: a JSON answer is read whole and judged by `Protocol` (an HTML page or a body cut
 * short is the key's failure); a stream is read up to its first event, which may be an error
 * (OpenRouter documents that the error can be the first and only event of a 200 stream).
 */
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import { type Head, verdictHeaders } from "./answerHead.js"
import type { EngineState } from "./state.js"
import type { RequestContext } from "./upstream.js"
import type { BodySink, UpstreamResponse } from "./upstreamResponse.js"

/** An answer ready to send: a whole body already judged a success, or a stream past its first event. */
export interface Answer {
  readonly _tag: "Answer"
  readonly status: number
  /** What the gateway reads of its head (`answerHead.ts`); its header object is `response.headers`. */
  readonly meta: Head
  readonly response: UpstreamResponse
  /** A whole body, or a stream's bytes so far (up to its first event), still to be sent. */
  readonly head: ReadonlyArray<Buffer>
  /** An event stream (else a body read whole, its verdict known). */
  readonly stream: boolean
  /** The body was read to its end: `head` is all of it. */
  readonly whole: boolean
  /** A whole JSON body's `usage.cost`. */
  readonly cost: number | undefined
  /** The attempt's idle timeout, while the body is still to come (a stream): touched per chunk. */
  readonly timer: BodyTimer | undefined
}

/**
 * Where a read answer goes, once: `answer` (ready to send), `fail` (the key's failure: a bad body
 * or a first event that is an error) or `broken` (the body broke off).
 */
export interface AnswerSink {
  answer(answer: Answer): void
  fail(error: UpstreamError.UpstreamError): void
  broken(e: unknown): void
}

/** An attempt's body timeout: `touch` at each chunk, `stop` once the body has ended or broken. */
export interface BodyTimer {
  touch(): void
  /** The caller stopped reading: the deadline is the caller's now, until the next `touch`. */
  hold(): void
  stop(): void
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

/** Whether the text holds a whole first data event: a `data:` line and the line break ending it. */
const firstEventEnd = (text: string): number => {
  const at = text.startsWith("data:") ? 0 : text.indexOf("\ndata:")
  return at === -1 ? -1 : text.indexOf("\n", at + 1)
}

/** Reads a 2xx as described above, into `sink`. */
export const readAnswer = (
  engine: EngineState,
  ctx: RequestContext,
  status: number,
  res: UpstreamResponse,
  head: Head,
  timer: BodyTimer,
  sink: AnswerSink
): void => {
  new Reader(engine, ctx, status, res, head, timer, sink).listen()
}

/** One answer being read: the body's reader (`upstreamResponse.ts`) until it is judged or handed on. */
class Reader implements BodySink {
  readonly kind: Protocol.Kind
  readonly chunks: Array<Buffer> = []
  size = 0
  text = ""
  /** The body was read to its end. */
  ended = false
  constructor(
    readonly engine: EngineState,
    readonly ctx: RequestContext,
    readonly status: number,
    readonly res: UpstreamResponse,
    readonly head: Head,
    readonly timer: BodyTimer,
    readonly sink: AnswerSink
  ) {
    this.kind = Protocol.kindOf(head.contentType)
  }

  listen(): void {
    this.res.setSink(this)
  }

  off(): void {
    this.res.setSink(undefined)
  }

  /** A stream handed on with what was read so far (`whole`: it has already ended). */
  streamed(whole: boolean): Answer {
    return {
      _tag: "Answer",
      status: this.status,
      meta: this.head,
      response: this.res,
      head: this.chunks,
      stream: true,
      whole,
      cost: undefined,
      timer: whole ? undefined : this.timer
    }
  }

  data(chunk: Buffer): void {
    this.timer.touch()
    this.chunks.push(chunk)
    this.size += chunk.length
    if (this.kind !== "sse") return
    const res = this.res
    // A stream: held until its first data event is whole, then judged by that event.
    this.text += chunk.toString("latin1")
    const text = this.text
    const end = firstEventEnd(text)
    if (end === -1) {
      // Keep-alives without end: past this much, the stream is passed on without the check.
      if (this.size <= MAX_HELD) return
      this.off()
      res.pause()
      return this.sink.answer(this.streamed(false))
    }
    // Held (and the socket not read) until the stream is taken over (`settle.ts`).
    this.off()
    res.pause()
    const first = text.slice(0, end + 1)
    const info = first.includes(ERROR)
      ? Protocol.streamError(Buffer.from(first, "latin1").toString("utf8"))
      : undefined
    if (info !== undefined) {
      this.timer.stop()
      res.destroy()
      return this.sink.fail(
        Protocol.fromErrorObject(info, {
          now: this.engine.built.clock.unsafeCurrentTimeMillis(),
          model: this.ctx.model
        })
      )
    }
    this.sink.answer(this.streamed(false))
  }

  end(): void {
    this.ended = true
    this.timer.stop()
    if (this.kind === "sse") {
      // Ended before any event: passed on as it is, judged by the usual tail reading.
      return this.sink.answer(this.streamed(true))
    }
    const { chunks, size, status } = this
    const tail = tailOf(chunks)
    const headers = verdictHeaders(this.res, this.head, tail)
    const whole =
      size <= TAIL ? tail : tail.includes(ERROR) ? Buffer.concat(chunks, size).toString("utf8") : undefined
    const verdict = Protocol.tailVerdict(status, headers, this.ctx.method === "POST", tail, whole, {
      now: this.engine.built.clock.unsafeCurrentTimeMillis(),
      model: this.ctx.model
    })
    if (verdict._tag === "Failure") return this.sink.fail(verdict.error)
    this.sink.answer({
      _tag: "Answer",
      status,
      meta: this.head,
      response: this.res,
      head: chunks,
      stream: false,
      whole: true,
      cost: verdict.cost,
      timer: undefined
    })
  }

  error(e: unknown): void {
    if (this.ended) return
    this.off()
    this.timer.stop()
    this.sink.broken(e)
  }

  close(): void {
    if (!this.ended && !this.res.complete) this.error(new Error("upstream closed the answer before its end"))
  }
}
