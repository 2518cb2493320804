/**
 * `X-RateLimit-*` (issue 14): OpenRouter sends an account window's limit, what is left of it and its
 * reset only on its own 429s, never on successes (the API contract), and the simulator does the
 * same; `Protocol.rateLimitOf` reads them wherever they come (a success carrying them, from a proxy
 * in front of OpenRouter, teaches pacing the window too).
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
  it.scopedLive(
    "only OpenRouter's own 429 carries the window (limit, remaining, reset); Protocol reads it",
    () =>
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
        expect(Protocol.rateLimitOf(first.headers)).toBeUndefined()
        // A provider's 503 is counted in the window and carries no X-RateLimit-* either (with them, a
        // 429 reads as the account's own limit).
        const failed = yield* chat(sim.baseUrl, failing!)
        expect(failed.status).toBe(503)
        expect(Protocol.rateLimitOf(failed.headers)).toBeUndefined()
        const third = yield* chat(sim.baseUrl, steady!)
        expect(third.status).toBe(200)
        expect(Protocol.rateLimitOf(third.headers)).toBeUndefined()
        const refused = yield* chat(sim.baseUrl, steady!)
        expect(refused.status).toBe(429)
        const w = Protocol.rateLimitOf(refused.headers)
        expect(w).toMatchObject({ limit: 3, remaining: 0 })
        expect(w!.resetAt).toBeGreaterThan(Date.now() + 50_000)
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
