import { describe, expect, it } from "@effect/vitest"
import type { UpstreamError } from "@or-balancer/core"
import { Duration, FastCheck as fc } from "effect"
import { Protocol } from "../src/index.js"

const SECRET = "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

describe("Protocol.affinityOf", () => {
  it("session_id, else prompt_cache_key, else user; an empty string is no id", () => {
    expect(Protocol.affinityOf({ session_id: "s", prompt_cache_key: "p", user: "u" })).toBe("s")
    expect(Protocol.affinityOf({ prompt_cache_key: "p", user: "u" })).toBe("p")
    expect(Protocol.affinityOf({ user: "u" })).toBe("u")
    expect(Protocol.affinityOf({ session_id: "", prompt_cache_key: "", user: "u" })).toBe("u")
    expect(Protocol.affinityOf({ session_id: "", user: "" })).toBeUndefined()
    expect(Protocol.affinityOf({ session_id: 42, user: null })).toBeUndefined()
  })
})

describe("Protocol classification", () => {
  const body = (code: number, message: string, metadata?: Record<string, unknown>) =>
    JSON.stringify({ error: { code, message, ...(metadata === undefined ? {} : { metadata }) } })

  it("a 402 by its limit_source: spend in flight is a short wait, the key's or account's limit puts the key out", () => {
    const inFlight = Protocol.fromResponse(
      402,
      { "retry-after": "2" },
      body(402, "in flight", { limit_source: "openrouter_in_flight_budget" })
    ) as UpstreamError.RateLimited
    expect(inFlight._tag).toBe("RateLimited")
    expect(Duration.toMillis(inFlight.retryAfter!)).toBe(2000)
    for (const source of ["openrouter_key_limit", "openrouter_credits", undefined]) {
      const e = Protocol.fromResponse(
        402,
        {},
        body(402, "no credit", source === undefined ? undefined : { limit_source: source })
      )
      expect([source, e._tag]).toEqual([source, "InsufficientCredits"])
      // The account's credits take the whole account out; anything else is the key's own limit.
      expect([source, (e as UpstreamError.InsufficientCredits).scope]).toEqual([
        source,
        source === "openrouter_credits" ? "account" : "key"
      ])
    }
    // In band too.
    const inBand = Protocol.fromErrorObject(
      Protocol.errorInfo({
        code: 402,
        message: "x",
        metadata: { limit_source: "openrouter_in_flight_budget" }
      })!
    )
    expect(inBand._tag).toBe("RateLimited")
  })

  it("a Responses stream's `error` event and `response.failed` are in-band errors; `error: null` is none", () => {
    const errorEvent = { type: "error", sequence_number: 3, code: "provider_unavailable", message: "gone" }
    const limited = {
      type: "error",
      code: 429,
      message: "slow",
      metadata: { error_type: "rate_limit_exceeded" }
    }
    const failed = {
      type: "response.failed",
      response: { object: "response", status: "failed", error: { code: "server_error", message: "gone" } }
    }
    const created = {
      type: "response.created",
      response: { object: "response", status: "in_progress", error: null }
    }
    const tag = (chunk: unknown) => {
      const info = Protocol.chunkError(chunk)
      return info === undefined ? "none" : Protocol.fromErrorObject(info)._tag
    }
    const tailTag = (chunk: unknown) => {
      const info = Protocol.streamError(`event: x\ndata: ${JSON.stringify(chunk)}\n\n`)
      return info === undefined ? "none" : Protocol.fromErrorObject(info)._tag
    }
    const cases: Array<[unknown, string]> = [
      [errorEvent, "ServerError"],
      [limited, "RateLimited"],
      [failed, "ServerError"],
      [created, "none"]
    ]
    for (const [chunk, expected] of cases) expect([tag(chunk), tailTag(chunk)]).toEqual([expected, expected])
    // A plain Responses answer carries `error: null`: a success, with its cost.
    const plain = JSON.stringify({
      object: "response",
      status: "completed",
      error: null,
      usage: { cost: 0.5 }
    })
    expect(Protocol.jsonVerdict(200, {}, plain)).toEqual({ _tag: "Success", cost: 0.5 })
    expect(Protocol.tailVerdict(200, { "content-type": "application/json" }, true, plain, plain)).toEqual({
      _tag: "Success",
      cost: 0.5
    })
  })

  it("a 403 \"Key limit exceeded\" is the key's limit; another 403 is the request's", () => {
    expect(Protocol.fromResponse(403, {}, body(403, "Key limit exceeded"))._tag).toBe("InsufficientCredits")
    // With the budget's `resets_at`, the key's limit says when it is whole again.
    const daily = Protocol.fromResponse(
      403,
      {},
      body(403, "Key limit exceeded", {
        limit_source: "openrouter_key_limit",
        scope: "key",
        resets_at: "2026-01-06T00:00:00.000Z"
      })
    ) as UpstreamError.InsufficientCredits
    expect([daily._tag, daily.scope, daily.until]).toEqual([
      "InsufficientCredits",
      "key",
      Date.UTC(2026, 0, 6)
    ])
    const never = Protocol.fromResponse(
      403,
      {},
      body(403, "Key limit exceeded", { limit_source: "openrouter_key_limit", resets_at: null })
    ) as UpstreamError.InsufficientCredits
    expect([never.scope, never.until]).toEqual(["key", undefined])
    expect(Protocol.fromResponse(403, {}, body(403, "flagged by moderation"))._tag).toBe("BadRequest")
  })

  it("an in-band stream error in either form, the same from a parsed event and from a tail", () => {
    const both = { error: { code: 502, message: "died" }, choices: [{ index: 0, finish_reason: "error" }] }
    const topLevel = {
      error: { code: 429, message: "slow", metadata: { error_type: "rate_limit_exceeded" } }
    }
    const finishOnly = { choices: [{ index: 0, delta: {}, finish_reason: "error" }] }
    const fine = { choices: [{ index: 0, delta: { content: 'say "error"' }, finish_reason: "stop" }] }
    const tag = (chunk: unknown) => {
      const info = Protocol.chunkError(chunk)
      return info === undefined ? "none" : Protocol.fromErrorObject(info)._tag
    }
    const tailTag = (chunk: unknown) => {
      const info = Protocol.streamError(`: keep-alive\n\ndata: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`)
      return info === undefined ? "none" : Protocol.fromErrorObject(info)._tag
    }
    const cases: Array<[unknown, string]> = [
      [both, "ServerError"],
      [topLevel, "RateLimited"],
      [finishOnly, "ServerError"],
      [fine, "none"]
    ]
    for (const [chunk, expected] of cases) {
      expect([tag(chunk), tailTag(chunk)]).toEqual([expected, expected])
    }
  })

  it("the cost of an answer: parsed, from a tail, from a watched stream", () => {
    const answer = { id: "x", choices: [], usage: { total_tokens: 3, cost: 0.0125 } }
    expect(Protocol.costOf(answer)).toBe(0.0125)
    expect(Protocol.costInTail(JSON.stringify(answer))).toBe(0.0125)
    expect(Protocol.costInTail('{"usage": {"cost" : 1.5e-3 }}')).toBe(0.0015)
    expect(Protocol.costInTail('{"cost":"free"}')).toBeUndefined()
    const watch = Protocol.makeStreamWatch()
    const events = `data: {"choices":[]}\n\ndata: {"choices":[],"usage":{"cost":0.5}}\n\ndata: [DONE]\n\n`
    watch.feed(new TextEncoder().encode(events.slice(0, 17)))
    watch.feed(new TextEncoder().encode(events.slice(17)))
    expect([watch.cost(), watch.error(), watch.events()]).toEqual([0.5, undefined, 2])
  })

  it("a 2xx that is not the JSON it should be is InvalidResponse; a 2xx error body maps like its code", () => {
    const html = Protocol.tailVerdict(200, { "content-type": "text/html" }, true, "<html></html>", undefined)
    expect(html._tag === "Failure" && html.error._tag).toBe("InvalidResponse")
    const cut = Protocol.tailVerdict(
      200,
      { "content-type": "application/json" },
      true,
      '{"id":"x","cho',
      undefined
    )
    expect(cut._tag === "Failure" && cut.error._tag).toBe("InvalidResponse")
    // Not an API call (a listing passed through): any content type is fine.
    expect(
      Protocol.tailVerdict(200, { "content-type": "text/html" }, false, "<html></html>", undefined)._tag
    ).toBe("Success")
    const errorBody = JSON.stringify({ error: { code: 503, message: "no provider" } })
    const inJson = Protocol.tailVerdict(
      200,
      { "content-type": "application/json" },
      true,
      errorBody,
      errorBody
    )
    expect(inJson._tag === "Failure" && inJson.error._tag).toBe("ServerError")
    expect(Protocol.jsonVerdict(200, {}, errorBody)).toMatchObject({ _tag: "Failure" })
    expect(Protocol.jsonVerdict(200, {}, '{"choices":[],"usage":{"cost":2}}')).toEqual({
      _tag: "Success",
      cost: 2
    })
    expect(Protocol.jsonVerdict(200, {}, "<html>")).toMatchObject({ _tag: "Failure" })
  })
})

describe("Protocol scrubbing", () => {
  const forms = [
    SECRET,
    `Bearer ${SECRET}`,
    encodeURIComponent(`Bearer ${SECRET}`),
    `Bearer ${SECRET.replace(/-/g, "%2D")}`,
    `Bearer ${SECRET.replace(/-/g, "%2d")}`
  ]
  const body = SECRET.slice("sk-or-v1-".length)

  it("a key whole, Bearer-prefixed and URL-encoded, in text and in bytes", () => {
    for (const form of forms) {
      const text = `{"error":{"message":"Invalid API key: ${form}"}}`
      const scrubbed = Protocol.scrub(text)
      expect(scrubbed).not.toContain(body)
      expect(scrubbed).toContain("sk-or-…")
      expect(Protocol.scrubBytes(Buffer.from(text)).toString()).toBe(scrubbed)
    }
    // Nothing to cut: the same buffer back, no copy.
    const clean = Buffer.from('data: {"choices":[{"delta":{"content":"task-oriented"}}]}\n\n')
    expect(Protocol.scrubBytes(clean)).toBe(clean)
  })

  it("a key split across stream chunks at any point is cut, and nothing else changes", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...forms),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.string({ maxLength: 20 }),
        (form, cuts, noise) => {
          const text = `data: {"a":"${noise.replace(/[^a-z ]/g, "")} ${form} x"}\n\ndata: [DONE]\n\n`
          const bytes = Buffer.from(text)
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
          const scrubber = Protocol.makeStreamScrubber()
          const out: Array<Buffer> = []
          let from = 0
          for (const p of [...points, bytes.length]) {
            out.push(scrubber.push(bytes.subarray(from, p)))
            from = p
          }
          out.push(scrubber.end())
          const joined = Buffer.concat(out).toString()
          return !joined.includes(body) && joined === Protocol.scrub(text)
        }
      )
    )
  })
})

describe("Protocol.scrubHeader", () => {
  it("cuts a key out of a header value with an ASCII mask (a header cannot carry …)", () => {
    expect(Protocol.scrubHeader(`Bearer ${SECRET}`)).toBe("Bearer sk-or-***")
    expect(Protocol.scrubHeader(`k=${encodeURIComponent(SECRET)}; Path=/`)).toBe("k=sk-or-***; Path=/")
    expect(Protocol.scrubHeader("application/json")).toBe("application/json")
  })
})
