/**
 * Credit forecasts: the burn rate over a sliding window of the monitor's spend, when credit runs
 * out at that rate and when `limit_reset` brings it back, in `/status` and `/metrics`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Gateway from "../src/Gateway.js"
import * as Forecast from "../src/internal/forecast.js"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

describe("credit forecasts", () => {
  it.scopedLive("/status and /metrics carry each key's burn rate, exhaustion and reset", () =>
    Effect.gen(function* () {
      const keys = simKeys(["fc-daily", "fc-open"]).map((k) =>
        k.label === "fc-daily" ? { ...k, limit: 1, limitReset: "daily" as const } : k
      )
      const sim = yield* Simulator.make({ seed: 7, keys })
      const gw = yield* Gateway.make(
        yield* configFor(sim, {
          strategy: [{ name: "threshold", threshold: 0, stay: false }, { name: "round-robin" }]
        })
      )
      yield* Effect.sleep("20 millis")
      for (let i = 0; i < 8; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      const before = Date.now()
      const status = yield* gw.status
      const daily = status.keys.find((k) => k.id === "fc-daily")!
      const open = status.keys.find((k) => k.id === "fc-open")!
      // Round robin: both keys burn.
      assert.isAbove(daily.forecast.burnUsdPerMin, 0)
      assert.isAbove(open.forecast.burnUsdPerMin, 0)
      // The capped key runs out at credit / burn; the uncapped one never does.
      const at = Date.parse(daily.forecast.exhaustsAt!)
      const expected = before + (daily.credit! / daily.forecast.burnUsdPerMin) * 60_000
      assert.closeTo(at, expected, 1000)
      assert.isNull(open.forecast.exhaustsAt)
      const d = new Date()
      assert.strictEqual(
        daily.forecast.resetsAt,
        new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)).toISOString()
      )
      assert.isNull(open.forecast.resetsAt)
      // The account sums its keys: its credit is unknown (one key is unlimited), so no exhaustion.
      const acme = status.accounts.find((a) => a.id === "acme")!
      assert.closeTo(
        acme.forecast.burnUsdPerMin,
        daily.forecast.burnUsdPerMin + open.forecast.burnUsdPerMin,
        1e-12
      )
      assert.isNull(acme.forecast.exhaustsAt)
      assert.strictEqual(acme.forecast.resetsAt, daily.forecast.resetsAt)
      const metrics = yield* gw.metrics
      assert.match(metrics, /or_balancer_credit_exhaustion_seconds\{key="fc-daily"\} (\d|\+Inf)/)
      assert.notMatch(metrics, /or_balancer_credit_exhaustion_seconds\{key="fc-open"\}/)
      assert.match(metrics, /or_balancer_credit_burn_usd_per_minute\{key="fc-open"\} /)
    })
  )

  it("burn rate over the sliding window: old samples leave it", () => {
    const samples = Forecast.makeSamples()
    const t0 = Date.UTC(2026, 0, 5)
    Forecast.sample(samples, [{ id: "k", spend: 0 }], t0)
    assert.strictEqual(Forecast.burnPerMinute(samples, "k"), 0)
    Forecast.sample(samples, [{ id: "k", spend: 1 }], t0 + 60_000)
    assert.strictEqual(Forecast.burnPerMinute(samples, "k"), 1)
    // A quiet stretch: ten minutes later, with no more spend, the rate falls as the window slides.
    Forecast.sample(samples, [{ id: "k", spend: 1 }], t0 + 6 * 60_000)
    Forecast.sample(samples, [{ id: "k", spend: 1 }], t0 + 12 * 60_000)
    assert.strictEqual(Forecast.burnPerMinute(samples, "k"), 0)
  })

  it("exhaustion at the burn rate; reset at the next 00:00 UTC of its period", () => {
    const now = Date.UTC(2026, 0, 7, 18) // a Wednesday
    const f = Forecast.forecast(0.5, 3, "weekly", now)
    assert.strictEqual(f.exhaustionSeconds, 360)
    assert.strictEqual(f.exhaustsAt, new Date(now + 360_000).toISOString())
    assert.strictEqual(f.resetsAt, new Date(Date.UTC(2026, 0, 12)).toISOString())
    assert.strictEqual(
      Forecast.forecast(0.5, 3, "monthly", now).resetsAt,
      new Date(Date.UTC(2026, 1, 1)).toISOString()
    )
    assert.isNull(Forecast.forecast(0, 3, "daily", now).exhaustsAt)
    assert.isNull(Forecast.forecast(1, null, null, now).exhaustsAt)
    const sum = Forecast.sumForecast(
      [
        { burn: 1, credit: 2, reset: "monthly" },
        { burn: 1, credit: 4, reset: "daily" }
      ],
      now
    )
    assert.strictEqual(sum.exhaustionSeconds, 180)
    assert.strictEqual(sum.resetsAt, new Date(Date.UTC(2026, 0, 8)).toISOString())
  })
})
