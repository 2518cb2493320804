import { assert, describe, it } from "@effect/vitest"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import * as Effect from "effect/Effect"
import * as Simulator from "../src/Simulator.js"
import { get, post } from "./http.js"

// OpenRouter's limit semantics as the simulator reproduces them (openrouter-api.md, "Keys,
// limits and credit" and "Errors"), over real loopback HTTP.

const secret = (i: number) => Simulator.simulatedSecret(7, i)
const PENNY = "sim/penny" // $0.01 a request, nothing per token
const FREE = "sim/model:free"
const models: ReadonlyArray<Simulator.ModelConfig> = [
  { id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 },
  { id: FREE, promptPrice: 0, completionPrice: 0 },
  { id: "openai/gpt-4o-mini", promptPrice: 0.15, completionPrice: 0.6 }
]
const messages = [{ role: "user", content: "hi" }]
const chat = (sim: Simulator.Handle, i: number, model = PENNY) =>
  post(sim, "/chat/completions", secret(i), { model, messages })
const status = (sim: Simulator.Handle, i: number, model = PENNY) =>
  Effect.map(chat(sim, i, model), (r) => r.status)

describe("Simulator limits", () => {
  it.scopedLive("keeps money exact: a $0.50 key at $0.01 a request serves exactly 50 requests", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ models, keys: [{ label: "half", secret: secret(0), limit: 0.5 }] })
      const statuses = yield* Effect.all(
        Array.from({ length: 50 }, () => status(sim, 0)),
        { concurrency: 8 }
      )
      assert.deepStrictEqual(
        statuses,
        Array.from({ length: 50 }, () => 200)
      )
      const refused = yield* chat(sim, 0)
      assert.strictEqual(refused.status, 402)
      assert.strictEqual(refused.json.error.metadata.limit_source, "openrouter_key_limit")
      assert.strictEqual(refused.json.error.metadata.error_type, "payment_required")
      const info = (yield* get(sim, "/key", secret(0))).json.data
      assert.strictEqual(info.usage, 0.5)
      assert.strictEqual(info.limit_remaining, 0)
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys.half!.spend, 0.5)
      assert.strictEqual(stats.keys.half!.overspend, 0)
      assert.deepStrictEqual(stats.keys.half!.byOutcome, { "200": 50, "402": 1 })
    })
  )

  it.scopedLive(
    'answers a key over its limit with the 403 "Key limit exceeded" form, per key or by config',
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          models,
          keyLimitStatus: 403,
          keys: [
            { label: "by-config", secret: secret(0), limit: 0.01 },
            { label: "own-402", secret: secret(1), limit: 0.01, keyLimitStatus: 402 }
          ]
        })
        assert.strictEqual(yield* status(sim, 0), 200)
        const forbidden = yield* chat(sim, 0)
        assert.strictEqual(forbidden.status, 403)
        assert.strictEqual(forbidden.json.error.code, 403)
        assert.strictEqual(forbidden.json.error.message, "Key limit exceeded")
        assert.deepStrictEqual(forbidden.json.error.metadata, {
          limit_source: "openrouter_key_limit",
          scope: "key",
          limit_usd: 0.01,
          spend_usd: 0.01,
          resets_at: null // no limit_reset: the cap never comes back by itself
        })
        assert.strictEqual(yield* status(sim, 1), 200)
        assert.strictEqual(yield* status(sim, 1), 402)
        yield* sim.updateKey("own-402", { keyLimitStatus: 403, limitReset: "daily" })
        const daily = yield* chat(sim, 1)
        assert.strictEqual(daily.status, 403)
        const midnight = CreditLookup.nextReset("daily", Date.now())
        assert.strictEqual(daily.json.error.metadata.resets_at, new Date(midnight).toISOString())
        assert.deepStrictEqual((yield* sim.stats).keys["by-config"]!.byOutcome, { "200": 1, "403": 1 })
      })
  )

  it.scopedLive(
    "refuses every key of an account out of credits, and spendable is the smaller of key and account",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          models,
          keys: [
            { label: "a", account: "one", secret: secret(0) },
            { label: "b", account: "one", secret: secret(1), limit: 5 },
            { label: "admin", account: "one", secret: secret(2), management: true },
            { label: "other", account: "two", secret: secret(3) },
            { label: "capped", account: "two", secret: secret(4), limit: 0.01 }
          ],
          accounts: { one: { totalCredits: 0.02 }, two: { totalCredits: 5 } }
        })
        const before = yield* sim.stats
        assert.strictEqual(before.keys.a!.spendable, 0.02) // unlimited key: the account's balance
        assert.strictEqual(before.keys.b!.spendable, 0.02) // $5 cap, but the account has $0.02
        assert.strictEqual(before.keys.capped!.spendable, 0.01) // its own cap is the smaller
        assert.isNull(before.keys.a!.limitRemaining)
        assert.deepStrictEqual([yield* status(sim, 0), yield* status(sim, 1)], [200, 200])
        for (const i of [0, 1]) {
          const refused = yield* chat(sim, i)
          assert.strictEqual(refused.status, 402)
          assert.strictEqual(refused.json.error.metadata.limit_source, "openrouter_credits")
        }
        assert.strictEqual(yield* status(sim, 3), 200) // another account pays for itself
        const credits = yield* get(sim, "/credits", secret(2))
        assert.deepStrictEqual(credits.json, { data: { total_credits: 0.02, total_usage: 0.02 } })
        assert.strictEqual((yield* get(sim, "/credits", secret(0))).status, 403)
        assert.strictEqual((yield* sim.stats).keys.b!.spendable, 0)
        assert.deepStrictEqual((yield* sim.stats).accounts.one, {
          requests: 4,
          rateLimited: 0,
          usage: 0.02,
          balance: 0
        })
        // A balance of exactly 0 still serves free models; a negative one refuses them too.
        assert.strictEqual(yield* status(sim, 0, FREE), 200)
        yield* sim.updateKey("a", { usage: 0.05 })
        const negative = yield* chat(sim, 0, FREE)
        assert.strictEqual(negative.status, 402)
        assert.strictEqual(negative.json.error.metadata.limit_source, "openrouter_credits")
        // Buying credits brings the account back.
        yield* sim.updateAccount("one", { totalCredits: 1 })
        assert.strictEqual(yield* status(sim, 1), 200)
      })
  )

  it.scopedLive(
    "refuses briefly with openrouter_in_flight_budget and Retry-After while spend is in flight",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          models,
          latency: { kind: "fixed", ms: 400 },
          keys: [
            { label: "a", account: "one", secret: secret(0) },
            { label: "b", account: "one", secret: secret(1), faults: { script: ["ok", "402"] } }
          ],
          accounts: { one: { inFlightBudget: 0.015 } }
        })
        const first = yield* Effect.fork(chat(sim, 0))
        yield* Effect.sleep("100 millis")
        const refused = yield* chat(sim, 1)
        assert.strictEqual(refused.status, 402)
        assert.strictEqual(refused.json.error.metadata.limit_source, "openrouter_in_flight_budget")
        assert.strictEqual(refused.headers.get("retry-after"), "1")
        assert.strictEqual((yield* first).status, 200)
        // Once the first is answered its spend is no longer in flight.
        assert.strictEqual(yield* status(sim, 1), 200)
        // The same refusal can be scripted as a fault.
        const scripted = yield* chat(sim, 1)
        assert.strictEqual(scripted.status, 402)
        assert.strictEqual(scripted.json.error.metadata.limit_source, "openrouter_in_flight_budget")
        assert.strictEqual(scripted.headers.get("retry-after"), "1")
        // A request bigger than the whole budget never fits: the account's credits, no Retry-After.
        yield* sim.updateAccount("one", { inFlightBudget: 0.005 })
        const heavy = yield* chat(sim, 0)
        assert.strictEqual(heavy.status, 402)
        assert.strictEqual(heavy.json.error.metadata.limit_source, "openrouter_credits")
        assert.isNull(heavy.headers.get("retry-after"))
      })
  )

  it.scopedLive("answers 401 for a key past its expires_at", () =>
    Effect.gen(function* () {
      const expiresAt = new Date(Date.now() + 60_000).toISOString()
      const sim = yield* Simulator.make({ models, keys: [{ label: "k", secret: secret(0), expiresAt }] })
      assert.strictEqual(yield* status(sim, 0), 200)
      assert.strictEqual((yield* get(sim, "/key", secret(0))).json.data.expires_at, expiresAt)
      yield* sim.advanceClock(61_000)
      const expired = yield* chat(sim, 0)
      assert.strictEqual(expired.status, 401)
      assert.strictEqual(expired.json.error.message, "This API key has expired")
      assert.strictEqual((yield* get(sim, "/key", secret(0))).status, 401)
      const bad = yield* Effect.flip(
        Effect.scoped(Simulator.make({ keys: [{ secret: secret(0), expiresAt: "soon" }] }))
      )
      assert.strictEqual(bad.reason, "InvalidConfig")
    })
  )

  for (const period of ["daily", "weekly", "monthly"] as const) {
    it.scopedLive(`gives a key its ${period} limit back at 00:00 UTC, not before`, () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          models,
          keys: [
            { label: "k", secret: secret(0), limit: 0.01, limitReset: period },
            { label: "never", secret: secret(1), limit: 0.01, limitReset: null }
          ]
        })
        const boundary = CreditLookup.nextReset(period, Date.now())
        const d = new Date(boundary)
        assert.strictEqual(d.getUTCHours() + d.getUTCMinutes() + d.getUTCSeconds(), 0)
        if (period === "weekly") assert.strictEqual(d.getUTCDay(), 1) // Monday
        if (period === "monthly") assert.strictEqual(d.getUTCDate(), 1)
        yield* sim.advanceClock(boundary - 3_000 - Date.now())
        assert.deepStrictEqual([yield* status(sim, 0), yield* status(sim, 0)], [200, 402])
        assert.deepStrictEqual([yield* status(sim, 1), yield* status(sim, 1)], [200, 402])
        yield* sim.advanceClock(1_000)
        assert.strictEqual(yield* status(sim, 0), 402) // still before midnight
        yield* sim.advanceClock(4_000)
        const info = (yield* get(sim, "/key", secret(0))).json.data
        assert.strictEqual(info.limit_remaining, 0.01)
        assert.strictEqual(info.usage, 0.01) // all-time usage is kept
        assert.strictEqual(yield* status(sim, 0), 200)
        assert.strictEqual(yield* status(sim, 1), 402) // no limit_reset: never comes back
      })
    )
  }

  it.scopedLive("limits free models to 20 a minute per account, with OpenRouter's rate limit headers", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        models,
        keys: [
          { label: "a", account: "one", secret: secret(0) },
          { label: "b", account: "one", secret: secret(1) },
          { label: "c", account: "two", secret: secret(2) }
        ]
      })
      const start = Date.now()
      const statuses = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i % 2),
        (i) => status(sim, i, FREE)
      )
      assert.isTrue(statuses.every((s) => s === 200))
      const limited = yield* chat(sim, 1, FREE)
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.json.error.metadata.error_type, "rate_limit_exceeded")
      assert.include(limited.json.error.message, "free-models-per-min")
      assert.strictEqual(limited.headers.get("x-ratelimit-limit"), "20")
      assert.strictEqual(limited.headers.get("x-ratelimit-remaining"), "0")
      const reset = Number(limited.headers.get("x-ratelimit-reset"))
      assert.isAtLeast(reset, start + 60_000)
      assert.isAtMost(reset, Date.now() + 60_000)
      const retryAfter = limited.headers.get("retry-after")!
      assert.match(retryAfter, /^\d+$/) // whole seconds
      assert.closeTo(Number(retryAfter), 60, 1)
      // Paid models and other accounts are not held back by it.
      assert.strictEqual(yield* status(sim, 0), 200)
      assert.strictEqual(yield* status(sim, 2, FREE), 200)
      yield* sim.advanceClock(61_000)
      assert.strictEqual(yield* status(sim, 0, FREE), 200)
      assert.deepStrictEqual((yield* sim.stats).accounts.one, {
        requests: 23,
        rateLimited: 1,
        usage: 0.01,
        balance: null
      })
    })
  )

  it.scopedLive("limits free models to 50 a UTC day, or 1,000 once the account bought 10 credits", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        models,
        keys: [
          { label: "poor", account: "poor", secret: secret(0) },
          { label: "rich", account: "rich", secret: secret(1) }
        ],
        accounts: {
          poor: { freeRequestsPerMinute: null },
          rich: { freeRequestsPerMinute: null, totalCredits: 10 }
        }
      })
      const burst = (i: number, n: number) =>
        Effect.all(
          Array.from({ length: n }, () => status(sim, i, FREE)),
          { concurrency: 16 }
        )
      assert.isTrue((yield* burst(0, 50)).every((s) => s === 200))
      const limited = yield* chat(sim, 0, FREE)
      assert.strictEqual(limited.status, 429)
      assert.include(limited.json.error.message, "free-models-per-day")
      assert.strictEqual(limited.headers.get("x-ratelimit-limit"), "50")
      const midnight = CreditLookup.nextReset("daily", Date.now())
      assert.strictEqual(Number(limited.headers.get("x-ratelimit-reset")), midnight)
      assert.isTrue((yield* burst(1, 1000)).every((s) => s === 200))
      const rich = yield* chat(sim, 1, FREE)
      assert.strictEqual(rich.status, 429)
      assert.strictEqual(rich.headers.get("x-ratelimit-limit"), "1000")
      // The next UTC day starts afresh.
      yield* sim.advanceClock(midnight - Date.now() + 1_000)
      assert.strictEqual(yield* status(sim, 0, FREE), 200)
      assert.strictEqual(yield* status(sim, 1, FREE), 200)
    })
  )
})
