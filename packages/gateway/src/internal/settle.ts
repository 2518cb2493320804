/**
 * Settling an answer: its body is piped to the client as it comes, then the attempt is reported
 * once, with the verdict `Protocol` reads from the body's tail.
 */
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import type * as http from "node:http"
import { copyHeaders } from "./respond.js"
import type { EngineState } from "./state.js"
import { type Answer, type RequestContext, transportError } from "./upstream.js"

/** How a piped answer is settled: `Balancer.Started` has this shape, and the fiber path adapts to it. */
export interface Settler {
  readonly unsafeSucceed: (cost?: number | undefined) => void
  readonly unsafeFail: (error: UpstreamError.UpstreamError) => void
  readonly unsafeCancel: () => void
}

/** How much of a body's end is kept to read its verdict (the final usage, an in-band error). */
const TAIL = 4096

/**
 * Pipes the answer's body to the client as it comes, then settles: success with the cost read
 * from the tail, or failure for an in-band stream error, a body that is not the JSON it claims
 * to be, or a broken upstream stream. Settles exactly once.
 */
export const pipeAnswer = (
  engine: EngineState,
  ctx: RequestContext,
  res: http.ServerResponse,
  answer: Answer,
  settler: Settler
): void => {
  if (res.destroyed) {
    answer.body.destroy()
    return settler.unsafeCancel()
  }
  res.writeHead(answer.status, copyHeaders(answer.headers))
  let prev: Buffer | undefined
  let last: Buffer | undefined
  let size = 0
  let settled = false
  answer.body.on("data", (chunk: Buffer) => {
    prev = last
    last = chunk
    size += chunk.length
  })
  answer.body.once("end", () => {
    if (settled) return
    settled = true
    const tailBuf = prev === undefined ? last : last === undefined ? prev : Buffer.concat([prev, last])
    const tail =
      tailBuf === undefined ? "" : tailBuf.subarray(Math.max(0, tailBuf.length - TAIL)).toString("utf8")
    // The tail is the whole body when the body is that small (an error object in a 200 is).
    const whole = tailBuf !== undefined && size === tailBuf.length && size <= TAIL ? tail : undefined
    // A chat answer that is not the JSON or stream it should be (an HTML page behind a 200, a body
    // cut short) or that ends with an in-band error reached the client as sent, but counts
    // against the key, so health can take it out.
    const verdict = Protocol.tailVerdict(answer.status, answer.headers, ctx.method === "POST", tail, whole, {
      now: engine.built.clock.unsafeCurrentTimeMillis(),
      model: ctx.model
    })
    if (verdict._tag === "Success") settler.unsafeSucceed(verdict.cost)
    else settler.unsafeFail(verdict.error)
  })
  answer.body.once("error", (e) => {
    if (res.destroyed || settled) return
    settled = true
    settler.unsafeFail(transportError(e))
    res.destroy()
  })
  answer.body.pipe(res)
}
