// The simulator's credit: caps that refuse with 402, limit resets, overspend under races, /credits.
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { basic, chat, costOf, get, MINI, messages, secret } from "./support.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

describe("Simulator", () => {
  it.scopedLive("answers 402 once the credit cap cannot cover a request, and /key reflects the debits", () =>
    Effect.gen(function* () {
      const c = costOf(32)
      const sim = yield* Simulator.make(
        basic({ keys: [{ label: "capped", secret: secret(0), limit: 2.5 * c, limitReset: "daily" }] })
      )
      const statuses: Array<number> = []
      for (let i = 0; i < 3; i++)
        statuses.push((yield* chat(sim, secret(0), { model: MINI, messages })).status)
      assert.deepStrictEqual(statuses, [200, 200, 402])
      const refused = yield* chat(sim, secret(0), { model: MINI, messages })
      assert.strictEqual(refused.json.error.metadata.error_type, "payment_required")
      // A smaller request still fits.
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages, max_tokens: 4 })).status, 200)

      const info = yield* get(sim, "/key", secret(0))
      assert.strictEqual(info.status, 200)
      assert.strictEqual(info.json.data.label, "capped")
      assert.strictEqual(info.json.data.limit_reset, "daily")
      assert.closeTo(info.json.data.usage, 2 * c + costOf(4), 1e-15)
      assert.closeTo(info.json.data.limit_remaining, 0.5 * c - costOf(4), 1e-15)
      const legacy = yield* get(sim, "/auth/key", secret(0))
      assert.deepStrictEqual(legacy.json, info.json)

      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.capped!.byOutcome, { "200": 3, "402": 2 })
      assert.closeTo(stats.keys.capped!.spend, 2 * c + costOf(4), 1e-15)
      assert.strictEqual(stats.keys.capped!.overspend, 0)
      assert.strictEqual(stats.keys.capped!.keyLookups, 2)
    })
  )

  it.scopedLive("gives a capped key its whole limit again when its limit_reset period rolls over", () =>
    Effect.gen(function* () {
      const c = costOf(32)
      const sim = yield* Simulator.make(
        basic({
          keys: [
            // Two answers fit. "short" gets a short period once spent, "long" keeps the default (a day).
            { label: "short", secret: secret(0), limit: 2.5 * c, limitReset: "daily" },
            { label: "long", secret: secret(1), limit: 2.5 * c, limitReset: "daily" },
            { label: "manual", secret: secret(2), limit: 2.5 * c, limitReset: "monthly" },
            { label: "never", secret: secret(3), limit: 2.5 * c, limitReset: null }
          ]
        })
      )
      const spend = (i: number) =>
        Effect.forEach([0, 1, 2], () =>
          Effect.map(chat(sim, secret(i), { model: MINI, messages }), (r) => r.status)
        )
      for (const i of [0, 1, 2, 3]) assert.deepStrictEqual(yield* spend(i), [200, 200, 402])
      yield* sim.resetCredit("manual")
      // A new period length starts a new period now: nothing rolls over while the keys are spent.
      yield* sim.updateKey("short", { resetPeriodMs: 10_000 })
      yield* sim.updateKey("never", { resetPeriodMs: 10_000 })
      // The simulator's clock, not a real wait: the test cannot straddle a second rollover.
      yield* sim.advanceClock(15_000)
      const remaining = (i: number) => Effect.map(get(sim, "/key", secret(i)), (r) => r.json.data)
      const short = yield* remaining(0)
      assert.closeTo(short.limit_remaining, 2.5 * c, 1e-15)
      assert.closeTo(short.usage, 2 * c, 1e-15) // all-time usage is kept
      assert.closeTo(short.usage_daily, 0, 1e-15)
      assert.closeTo((yield* remaining(1)).limit_remaining, 0.5 * c, 1e-15)
      assert.closeTo((yield* remaining(2)).limit_remaining, 2.5 * c, 1e-15)
      assert.closeTo((yield* remaining(3)).limit_remaining, 0.5 * c, 1e-15) // no limit_reset: no period
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      assert.strictEqual((yield* chat(sim, secret(1), { model: MINI, messages })).status, 402)
      const stats = yield* sim.stats
      assert.closeTo(stats.keys.short!.limitRemaining!, 1.5 * c, 1e-15)
      assert.closeTo(stats.keys.long!.limitRemaining!, 0.5 * c, 1e-15)
      assert.isTrue(Exit.isFailure(yield* Effect.exit(sim.resetCredit("nobody"))))
    })
  )

  it.scopedLive("records overspend when concurrent requests race a small cap", () =>
    Effect.gen(function* () {
      const c = costOf(32)
      const sim = yield* Simulator.make(
        basic({
          keys: [{ label: "small", secret: secret(0), limit: 1.5 * c }],
          latency: { kind: "fixed", ms: 1000 }
        })
      )
      // All three arrive while the credit still looks sufficient; each is debited on completion.
      const results = yield* Effect.all(
        [0, 1, 2].map(() => chat(sim, secret(0), { model: MINI, messages })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(
        results.map((r) => r.status),
        [200, 200, 200]
      )
      const stats = yield* sim.stats
      assert.closeTo(stats.keys.small!.spend, 3 * c, 1e-15)
      assert.closeTo(stats.keys.small!.overspend, 1.5 * c, 1e-15)
      assert.strictEqual(stats.keys.small!.overspentRequests, 2)
      assert.closeTo(stats.overspend, 1.5 * c, 1e-15)
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 402)
    })
  )

  it.scopedLive("serves /credits only to management keys, and lists models with prices", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ accounts: { one: { totalCredits: 25 } } }))
      yield* chat(sim, secret(0), { model: MINI, messages })
      const ordinary = yield* get(sim, "/credits", secret(0))
      assert.strictEqual(ordinary.status, 403)
      assert.strictEqual(ordinary.json.error.metadata.error_type, "permission_denied")
      const admin = yield* get(sim, "/credits", secret(4))
      assert.strictEqual(admin.status, 200)
      assert.strictEqual(admin.json.data.total_credits, 25)
      assert.closeTo(admin.json.data.total_usage, costOf(32), 1e-15)
      const models = yield* get(sim, "/models")
      const mini = models.json.data.find((m: { id: string }) => m.id === MINI)
      assert.strictEqual(mini.pricing.prompt, "0.00000015")
      assert.strictEqual(mini.pricing.completion, "0.0000006")
    })
  )
})
