import { describe, expect, it } from "@effect/vitest"
import { UpstreamError } from "@or-balancer/core"
import { Duration } from "effect"
import { ErrorMapping } from "../src/index.js"

const body = (code: number, message: string, errorType?: string) =>
  JSON.stringify({ error: { code, message, ...(errorType ? { metadata: { error_type: errorType } } : {}) } })

describe("ErrorMapping.fromResponse", () => {
  it("maps each status to its error", () => {
    const cases: Array<[number, string, string]> = [
      [400, body(400, "temperature must be a number"), "BadRequest"],
      [400, body(400, "x is not a valid model ID"), "ModelNotFound"],
      [400, body(400, "nope", "model_not_found"), "ModelNotFound"],
      [401, body(401, "User not found"), "Unauthorized"],
      [402, body(402, "Insufficient credits"), "InsufficientCredits"],
      [403, body(403, "flagged by moderation"), "BadRequest"],
      [404, body(404, "No endpoints found"), "ModelNotFound"],
      [408, body(408, "timed out"), "Timeout"],
      [413, body(413, "too large"), "BadRequest"],
      [422, body(422, "unprocessable"), "BadRequest"],
      [429, body(429, "slow down"), "RateLimited"],
      [500, body(500, "oops"), "ServerError"],
      [502, body(502, "bad gateway"), "ServerError"],
      [503, body(503, "no provider"), "ServerError"],
      [524, "", "ServerError"],
      [529, "", "ServerError"]
    ]
    for (const [status, text, tag] of cases) {
      expect([status, ErrorMapping.fromResponse(status, {}, text)._tag]).toEqual([status, tag])
    }
  })

  it("keeps the status and the upstream message", () => {
    const e = ErrorMapping.fromResponse(422, {}, body(422, "bad tool schema"))
    expect(e).toBeInstanceOf(UpstreamError.BadRequest)
    expect((e as UpstreamError.BadRequest).status).toBe(422)
    expect(e.message).toContain("bad tool schema")
    const m = ErrorMapping.fromResponse(404, {}, body(404, "gone"), { model: "x/y" })
    expect((m as UpstreamError.ModelNotFound).model).toBe("x/y")
  })

  it("a 429 with X-RateLimit-* is OpenRouter's own (account); without, the provider's (key)", () => {
    const own = ErrorMapping.fromResponse(
      429,
      { "Retry-After": "7", "X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0" },
      body(429, "rate limit exceeded")
    ) as UpstreamError.RateLimited
    expect(own.scope).toBe("account")
    expect(Duration.toMillis(own.retryAfter!)).toBe(7000)
    const provider = ErrorMapping.fromResponse(429, { "retry-after": "2" }, body(429, "upstream busy"))
    expect((provider as UpstreamError.RateLimited).scope).toBe("key")
  })

  it("reads Retry-After as seconds or an HTTP date; a 429's X-RateLimit-Reset comes first", () => {
    const now = Date.UTC(2026, 0, 1, 0, 0, 0)
    const date = new Date(now + 30_000).toUTCString()
    const e = ErrorMapping.fromResponse(503, { "retry-after": date }, body(503, "overloaded"), { now })
    expect(
      Duration.toMillis(
        UpstreamError.retryAfterOf(e).pipe((o) => (o._tag === "Some" ? o.value : Duration.zero))
      )
    ).toBe(30_000)
    const reset = ErrorMapping.fromResponse(
      429,
      { "x-ratelimit-reset": String(now + 4_000), "x-ratelimit-limit": "20" },
      body(429, "limit"),
      { now }
    ) as UpstreamError.RateLimited
    expect(Duration.toMillis(reset.retryAfter!)).toBe(4_000)
    // Both: the reset (epoch ms, exact) wins over Retry-After's whole seconds.
    const both = ErrorMapping.fromResponse(
      429,
      { "retry-after": "1", "x-ratelimit-reset": String(now + 250), "x-ratelimit-limit": "20" },
      body(429, "limit"),
      { now }
    ) as UpstreamError.RateLimited
    expect(Duration.toMillis(both.retryAfter!)).toBe(250)
    // X-RateLimit-Limit travels on the error (what AccountPacing learns the window from); without it, none.
    expect([reset.limit, both.limit, reset.scope]).toEqual([20, 20, "account"])
    expect([reset.resetAt, both.resetAt]).toEqual([now + 4_000, now + 250])
    expect(ErrorMapping.parseRetryAfter("1.5", undefined)).toEqual(Duration.millis(1500))
    expect(ErrorMapping.parseRetryAfter("soon", now)).toBeUndefined()
    // Platform Headers and fetch Headers work too.
    const h = new Headers({ "Retry-After": "3" })
    const f = ErrorMapping.fromResponse(429, h, "") as UpstreamError.RateLimited
    expect(Duration.toMillis(f.retryAfter!)).toBe(3000)
    expect([f.limit, f.scope]).toEqual([undefined, "key"])
  })

  it("switches on metadata.error_type for in-band errors", () => {
    expect(ErrorMapping.fromInBandError({ code: 502, message: "provider died" })._tag).toBe("ServerError")
    expect(
      ErrorMapping.fromInBandError({ message: "x", metadata: { error_type: "rate_limit_exceeded" } })._tag
    ).toBe("RateLimited")
    expect(
      ErrorMapping.fromInBandError({ message: "x", metadata: { error_type: "payment_required" } })._tag
    ).toBe("InsufficientCredits")
    expect(ErrorMapping.fromInBandError({ code: "weird", message: "x" })._tag).toBe("ServerError")
    expect(ErrorMapping.fromInBandError(42)._tag).toBe("ServerError")
  })

  it("never crashes on a body that is not JSON, and says so", () => {
    const e = ErrorMapping.fromResponse(502, {}, "<html>Bad Gateway</html>")
    expect(e._tag).toBe("ServerError")
    expect(e.message).toContain("not JSON")
    const empty = ErrorMapping.fromResponse(500, {}, "")
    expect(empty.message).toContain("empty body")
    const ok = ErrorMapping.fromResponse(200, {}, "{}")
    expect(ok._tag).toBe("InvalidResponse")
    expect(ErrorMapping.fromResponse(200, {}, body(402, "broke"))._tag).toBe("InsufficientCredits")
    expect(ErrorMapping.fromResponse(302, {}, "")._tag).toBe("InvalidResponse")
  })

  it("never repeats anything that looks like a key", () => {
    const secret = "sk-or-v1-0123456789abcdef0123456789abcdef"
    const e = ErrorMapping.fromResponse(401, {}, body(401, `key ${secret} is disabled`))
    expect(e.message).not.toContain(secret)
    expect(JSON.stringify(e)).not.toContain("0123456789abcdef")
    const raw = ErrorMapping.fromResponse(500, {}, `crash dump auth=Bearer ${secret}`)
    expect(String(raw)).not.toContain("0123456789abcdef")
  })
})
