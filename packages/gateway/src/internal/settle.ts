/**
 * Settling an answer: a whole body is sent at once (its verdict is already known); a stream is
 * piped to the client as it comes and judged, when it ends, from its tail. Every byte and header
 * passes `Protocol`'s scrubber on its way out. The attempt is reported once.
 */
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as http from "node:http"
import { type Answer, tailOf } from "./answer.js"
import { clientHeaders, verdictHeaders, windowOf } from "./answerHead.js"
import { openAiError } from "./respond.js"
import type { EngineState } from "./state.js"
import { type RequestContext, transportError } from "./upstream.js"
import { CALLER_TOO_SLOW } from "./upstreamCall.js"

/** How an answer is settled: `Balancer.Started` has this shape, and the fiber path adapts to it. */
export interface Settler {
  /** `window`: the answer's `X-RateLimit-*` (pacing learns an account's window from it). */
  readonly unsafeSucceed: (cost?: number | undefined, window?: UpstreamError.RateWindow | undefined) => void
  readonly unsafeFail: (error: UpstreamError.UpstreamError) => void
  readonly unsafeCancel: () => void
}

export const sendAnswer = (
  engine: EngineState,
  ctx: RequestContext,
  res: http.ServerResponse,
  answer: Answer,
  settler: Settler
): void => {
  const body = answer.response
  // The request log records the verdict and cost (log.ts); nothing when logging is off.
  if (ctx.log !== undefined) settler = ctx.log.settler(settler)
  if (res.destroyed) {
    answer.timer?.stop()
    body.destroy()
    return settler.unsafeCancel()
  }
  // The gateway's request id, not the upstream's (answerHead.ts).
  if (!answer.stream) return sendWhole(res, answer, ctx.requestId, settler)
  // A stream: no length, it changes if a key is cut out of it.
  const headers = clientHeaders(answer.response, answer.meta, ctx.requestId, undefined)
  if (!writeHead(res, answer, headers, settler)) return
  pipeStream(engine, ctx, res, answer, settler)
}

/**
 * Writes the head, or, when Node refuses a header upstream sent, answers 502 and gives the key
 * back: a throw here would leave the request hanging and the key leased.
 */
const writeHead = (
  res: http.ServerResponse,
  answer: Answer,
  headers: Array<string>,
  settler: Settler
): boolean => {
  try {
    res.writeHead(answer.status, headers)
    return true
  } catch {
    answer.timer?.stop()
    answer.response.destroy()
    settler.unsafeCancel()
    openAiError(res, 502, "the upstream answer had a header that cannot be passed on", "server_error", null)
    return false
  }
}

const sendWhole = (res: http.ServerResponse, answer: Answer, requestId: string, settler: Settler) => {
  const head = answer.head
  const raw = head.length === 1 ? head[0]! : Buffer.concat(head)
  const bytes = Protocol.scrubBytes(raw)
  const headers = clientHeaders(answer.response, answer.meta, requestId, String(bytes.length))
  if (!writeHead(res, answer, headers, settler)) return
  res.end(bytes)
  settler.unsafeSucceed(answer.cost, windowOf(answer.response, answer.meta))
}

/**
 * The in-band error event that ends a stream broken after its first byte: by the upstream
 * (`stream_broken`), or cut because its caller stopped reading (`caller_too_slow`).
 */
export const brokenStreamEvent = (
  message: string,
  reason: "stream_broken" | "caller_too_slow" = "stream_broken"
): string =>
  `\n\ndata: ${JSON.stringify({
    error: {
      message:
        reason === "stream_broken"
          ? `the upstream stream broke after it began (${message}); the answer is incomplete`
          : `the stream was cut: ${message}; the answer is incomplete`,
      type: "server_error",
      code: 502,
      metadata: { reason }
    }
  })}\n\n`

/**
 * Pipes a stream (what was read of it, then the rest as it comes), then settles: success with
 * the cost read from the tail, or failure for an in-band error or a broken upstream stream.
 */
const pipeStream = (
  engine: EngineState,
  ctx: RequestContext,
  res: http.ServerResponse,
  answer: Answer,
  settler: Settler
) => {
  const body = answer.response
  const scrubber = Protocol.makeStreamScrubber()
  // The tail is kept to read the final usage (cost) and an in-band error.
  let prev: Buffer | undefined
  let last: Buffer | undefined
  let settled = false
  const timer = answer.timer
  const send = (chunk: Buffer) => {
    timer?.touch()
    prev = last
    last = chunk
    const out = scrubber.push(chunk)
    // The caller's connection is full: the upstream waits for it, and the idle deadline is the
    // caller's until it drains (a slow reader is no silent upstream).
    if (out.length > 0 && !res.write(out)) {
      body.pause()
      timer?.hold()
    }
  }
  const finish = () => {
    timer?.stop()
    if (settled) return
    settled = true
    const rest = scrubber.end()
    res.end(rest.length > 0 ? rest : undefined)
    const tail = prev === undefined ? (last === undefined ? "" : tailOf([last])) : tailOf([prev, last!])
    const verdict = Protocol.tailVerdict(
      answer.status,
      verdictHeaders(body, answer.meta, tail),
      ctx.method === "POST",
      tail,
      undefined,
      {
        now: engine.built.clock.unsafeCurrentTimeMillis(),
        model: ctx.model
      }
    )
    if (verdict._tag === "Success") settler.unsafeSucceed(verdict.cost, windowOf(body, answer.meta))
    else settler.unsafeFail(verdict.error)
  }
  // The client already has a 200 and part of the stream: no failover, no reset either. It gets an
  // in-band error event (after a blank line, so a cut event cannot swallow it), which the OpenAI
  // clients raise as an API error, and a clean end.
  const broke = (e: unknown) => {
    timer?.stop()
    if (res.destroyed || settled) return
    settled = true
    const rest = scrubber.end()
    if (rest.length > 0) res.write(rest)
    // The caller stopped reading for the idle deadline: its own doing, no verdict on the key.
    if ((e as { code?: unknown })?.code === CALLER_TOO_SLOW) {
      settler.unsafeCancel()
      return void res.end(brokenStreamEvent((e as Error).message, "caller_too_slow"))
    }
    const error = transportError(e)
    settler.unsafeFail(error)
    res.end(brokenStreamEvent(error.message))
  }
  for (const chunk of answer.head) send(chunk)
  // Handed over paused: it may have ended, or broken, since (the fiber path resumes later).
  if (answer.whole || body.readableEnded) return finish()
  if (body.errored !== null) return broke(body.errored)
  res.on("drain", () => {
    timer?.touch()
    body.resume()
  })
  body.setSink({
    data: send,
    end: finish,
    error: broke,
    // Closed with no error (the client went away): the body's timeout goes with it.
    close: () => timer?.stop()
  })
  body.resume()
}
