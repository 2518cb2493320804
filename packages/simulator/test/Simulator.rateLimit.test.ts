// The simulator's account-wide rate limit: OpenRouter's 429 with its headers.
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import { basic, chat, MINI, messages, secret } from "./support.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

describe("Simulator", () => {
  it.scopedLive("answers OpenRouter's own 429 with Retry-After and X-RateLimit-* for the whole account", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ accounts: { one: { rpm: 2, windowMs: 3_600_000 } } }))
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      assert.strictEqual((yield* chat(sim, secret(1), { model: MINI, messages })).status, 200)
      const before = Date.now()
      const limited = yield* chat(sim, secret(0), { model: MINI, messages })
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.json.error.metadata.error_type, "rate_limit_exceeded")
      assert.strictEqual(limited.headers.get("x-ratelimit-limit"), "2")
      assert.strictEqual(limited.headers.get("x-ratelimit-remaining"), "0")
      const reset = Number(limited.headers.get("x-ratelimit-reset"))
      assert.isAbove(reset, before)
      assert.isAbove(Number(limited.headers.get("retry-after")), 3000)
      // Another key of the same account is limited too; a key of another account is not.
      assert.strictEqual((yield* chat(sim, secret(1), { model: MINI, messages })).status, 429)
      assert.strictEqual((yield* chat(sim, secret(2), { model: MINI, messages })).status, 200)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.accounts.one, {
        requests: 4,
        rateLimited: 2,
        usage: 4.05e-5, // two answers, exactly
        balance: null
      })
      // Raising the limit at run time lets the account through again.
      yield* sim.updateAccount("one", { rpm: 100 })
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
    })
  )
})
