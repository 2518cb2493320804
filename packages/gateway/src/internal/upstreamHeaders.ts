/**
 * The headers of an upstream attempt: the key's credentials, what the caller sent that OpenRouter
 * reads (Accept, HTTP-Referer, X-Title), the request id and the caller's trace context.
 */
import type * as Key from "@or-balancer/core/Key"
import * as Redacted from "effect/Redacted"
import type { RequestContext } from "./upstream.js"

/** The headers sent upstream, in the order {@link pushHeaders} writes them. */
export const headersOf = (ctx: RequestContext, key: Key.Key): Record<string, string | number> => {
  const headers: Record<string, string | number> = {
    authorization: `Bearer ${Redacted.value(key.secret)}`,
    accept: ctx.accept ?? "*/*"
  }
  if (ctx.body !== undefined) {
    headers["content-type"] = "application/json"
    headers["content-length"] = ctx.body.length
  }
  if (ctx.referer !== undefined) headers["http-referer"] = ctx.referer
  if (ctx.title !== undefined) headers["x-title"] = ctx.title
  headers["x-request-id"] = ctx.requestId
  if (ctx.traceparent !== undefined) headers.traceparent = ctx.traceparent
  if (ctx.tracestate !== undefined) headers.tracestate = ctx.tracestate
  return headers
}

/** {@link headersOf} written straight into the flat list (no object per request). */
export const pushHeaders = (list: Array<string>, ctx: RequestContext, key: Key.Key): void => {
  list.push("authorization", `Bearer ${Redacted.value(key.secret)}`, "accept", ctx.accept ?? "*/*")
  if (ctx.body !== undefined)
    list.push("content-type", "application/json", "content-length", String(ctx.body.length))
  if (ctx.referer !== undefined) list.push("http-referer", ctx.referer)
  if (ctx.title !== undefined) list.push("x-title", ctx.title)
  list.push("x-request-id", ctx.requestId)
  if (ctx.traceparent !== undefined) list.push("traceparent", ctx.traceparent)
  if (ctx.tracestate !== undefined) list.push("tracestate", ctx.tracestate)
}
