/**
 * `X-RateLimit-*` on answers (issue 14): the simulator sends an account window's limit, what is left
 * of it and its reset on every 200 (as OpenRouter does), never on a provider's error; `Protocol`
 * reads them, so pacing can know a window before its first 429.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Redacted from "effect/Redacted"
import * as Effect from "effect/Effect"
import { Protocol } from "../src/index.js"

const chat = (baseUrl: string, secret: string) =>
  Effect.promise(() =>
    fetch(`${baseUrl}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] })
    }).then(async (r) => ({ status: r.status, headers: r.headers, text: await r.text() }))
  )

describe("X-RateLimit-* on answers", () => {
  it.scopedLive("a 200 carries its account window's limit, remaining and reset; Protocol reads them", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 3,
        keys: [
          { label: "steady", account: "acme", secret: `sk-or-v1-${"a".repeat(64)}` },
          {
            label: "failing",
            account: "acme",
            secret: `sk-or-v1-${"b".repeat(64)}`,
            faults: { script: ["503" as const], loop: true }
          }
        ],
        accounts: { acme: { rpm: 3, windowMs: 60_000 } },
        latency: { kind: "fixed", ms: 1 }
      })
      const [steady, failing] = sim.keys.map((k) => Redacted.value(k.secret))
      const first = yield* chat(sim.baseUrl, steady!)
      expect(first.status).toBe(200)
      const w1 = Protocol.rateLimitOf(first.headers)
      expect(w1).toMatchObject({ limit: 3, remaining: 2 })
      expect(w1!.resetAt).toBeGreaterThan(Date.now() + 50_000)
      // A provider's 503 is counted in the window but carries no X-RateLimit-* (with them, a 429
      // reads as the account's own limit).
      const failed = yield* chat(sim.baseUrl, failing!)
      expect(failed.status).toBe(503)
      expect(Protocol.rateLimitOf(failed.headers)).toBeUndefined()
      const third = yield* chat(sim.baseUrl, steady!)
      expect(Protocol.rateLimitOf(third.headers)).toEqual({ limit: 3, remaining: 0, resetAt: w1!.resetAt })
      // The refusal says the same window.
      const refused = yield* chat(sim.baseUrl, steady!)
      expect(refused.status).toBe(429)
      expect(Protocol.rateLimitOf(refused.headers)).toEqual({ limit: 3, remaining: 0, resetAt: w1!.resetAt })
    })
  )

  it("rateLimitOf: no valid limit, nothing; remaining capped at the limit; reset in seconds tolerated", () => {
    expect(Protocol.rateLimitOf({ "x-ratelimit-remaining": "4" })).toBeUndefined()
    expect(Protocol.rateLimitOf({ "x-ratelimit-limit": "zero" })).toBeUndefined()
    expect(Protocol.rateLimitOf({ "x-ratelimit-limit": "10", "x-ratelimit-remaining": "99" })).toEqual({
      limit: 10,
      remaining: 10,
      resetAt: undefined
    })
    expect(Protocol.rateLimitOf({ "X-RateLimit-Limit": "10", "X-RateLimit-Reset": "1700000000" })).toEqual({
      limit: 10,
      remaining: undefined,
      resetAt: 1_700_000_000_000
    })
  })
})
