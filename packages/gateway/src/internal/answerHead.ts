/**
 * What the gateway reads of an upstream 2xx's head, taken from its raw header list in one pass.
 * The header object (`UpstreamResponse.headers`, by Node's rules) is built on its first read, one
 * keyed store per header into a new object: in the CPU-bound bench that object, built for every
 * answer only to be copied into the client's headers, was ~3 % of the gateway's CPU. The object is still what a failure's
 * classification reads (`Protocol`), and what a head whose header names repeat is copied from
 * (Node's rules for merging repeats are kept that way).
 */
import * as Protocol from "@or-balancer/http/Protocol"
import type * as http from "node:http"
import { copyHeaders, isHopByHop } from "./respond.js"

/** An answer's header list and Node's header object made from it (`upstreamResponse.ts`). */
export interface Headed {
  readonly rawHeaders: ReadonlyArray<string>
  readonly headers: http.IncomingHttpHeaders
}

/** An upstream 2xx's head as the gateway reads it. */
export interface Head {
  /** The first `Content-Type`, as Node's header object keeps it. */
  readonly contentType: string | undefined
  /** The first `X-Generation-Id`. */
  readonly generationId: string | undefined
  /** It carries `X-RateLimit-Limit`: pacing reads the window from its headers. */
  readonly rateLimit: boolean
  /** A header name comes more than once (any case): its headers go out as Node merges them. */
  readonly repeated: boolean
  /** The raw header list's names in lowercase, in order. */
  readonly names: ReadonlyArray<string>
}

/**
 * The headers `Protocol.tailVerdict` is given: it reads only the content type, unless the body
 * holds an `"error"` (then it classifies the error, which may read any header): Node's header
 * object is built for that case alone.
 */
export const verdictHeaders = (
  res: Headed,
  head: Head,
  tail: string
): http.IncomingHttpHeaders | { readonly "content-type": string | undefined } =>
  tail.includes('"error"') ? res.headers : { "content-type": head.contentType }

/** A success's `X-RateLimit-*` window, if it carries one (OpenRouter's never do). */
export const windowOf = (res: Headed, head: Head) =>
  head.rateLimit ? Protocol.rateLimitOf(res.headers) : undefined

export const headOf = (raw: ReadonlyArray<string>): Head => {
  let contentType: string | undefined
  let generationId: string | undefined
  let rateLimit = false
  let repeated = false
  const names: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    // A handful of headers: comparing each name with the ones before it costs less than a Set.
    if (!repeated) repeated = names.includes(name)
    names.push(name)
    if (name === "content-type") contentType ??= raw[i + 1]
    else if (name === "x-generation-id") generationId ??= raw[i + 1]
    else if (name === "x-ratelimit-limit") rateLimit = true
  }
  return { contentType, generationId, rateLimit, repeated, names }
}

/**
 * The client's headers for an answer, as a flat list for `writeHead`: the upstream's, names in
 * lowercase, hop-by-hop ones dropped, anything key-like cut out; the gateway's request id in place
 * of the upstream's; `contentLength` in place of the upstream's length (undefined: none, for a
 * stream whose length changes if a key is cut out of it). The same headers, in the same order, as
 * `copyHeaders` of Node's header object with those two set.
 */
export const clientHeaders = (
  res: Headed,
  head: Head,
  requestId: string,
  contentLength: string | undefined
): Array<string> => {
  if (head.repeated) return fromObject(res.headers, requestId, contentLength)
  const raw = res.rawHeaders
  const out: Array<string> = []
  let id = false
  let length = false
  const names = head.names
  for (let i = 0; i < raw.length; i += 2) {
    const name = names[i >> 1]!
    if (isHopByHop(name)) continue
    if (name === "x-request-id") {
      id = true
      out.push(name, requestId)
    } else if (name === "content-length") {
      length = true
      if (contentLength !== undefined) out.push(name, contentLength)
    } else {
      out.push(name, Protocol.scrubHeader(raw[i + 1]!))
    }
  }
  if (!id) out.push("x-request-id", requestId)
  if (!length && contentLength !== undefined) out.push("content-length", contentLength)
  return out
}

/** {@link clientHeaders} from Node's header object (repeated names merged as Node merges them). */
const fromObject = (
  headers: http.IncomingHttpHeaders,
  requestId: string,
  contentLength: string | undefined
): Array<string> => {
  const copy = copyHeaders(headers)
  copy["x-request-id"] = requestId
  if (contentLength === undefined) delete copy["content-length"]
  else copy["content-length"] = contentLength
  const out: Array<string> = []
  for (const name in copy) {
    const v = copy[name]!
    if (typeof v === "string") out.push(name, v)
    else for (const one of v) out.push(name, one)
  }
  return out
}
