// Named clients' budget ledger (internal/clients.ts, prices.ts): reservations under any interleaving, periods, estimates.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Clients from "../src/internal/clients.js"
import * as Prices from "../src/internal/prices.js"

describe("client budget ledger", () => {
  const client = (usd: number, reserveUsd: number): GatewayConfig.ClientConfig => ({
    id: "prop",
    token: undefined as never,
    budget: { usd, period: "daily", reserveUsd, usdPerToken: undefined },
    rpm: undefined,
    models: undefined
  })

  it.prop(
    "N concurrent requests near exhaustion never exceed the budget at settle time",
    {
      budget: fc.double({ min: 0, max: 1, noNaN: true }),
      reserve: fc.double({ min: 0.0001, max: 0.5, noNaN: true }),
      // Each request: when it arrives, when it settles, the share of its estimate it costs, success.
      steps: fc.array(
        fc.record({
          settleAfter: fc.nat(20),
          share: fc.double({ min: 0, max: 1, noNaN: true }),
          ok: fc.boolean()
        }),
        { minLength: 1, maxLength: 60 }
      )
    },
    ({ budget, reserve, steps }) => {
      const ledger = Clients.makeLedger()
      const c = client(budget, reserve)
      const now = Date.UTC(2026, 0, 5, 12)
      const pending: Array<{ at: number; settle: () => void }> = []
      const check = () => {
        const a = ledger.get("prop")!
        assert.isAtMost(a.spent + a.reserved, budget + 1e-9)
      }
      steps.forEach((s, i) => {
        // Settle those due, in any order, interleaved with new admissions.
        for (let j = pending.length - 1; j >= 0; j--) {
          if (pending[j]!.at <= i) {
            pending[j]!.settle()
            pending.splice(j, 1)
            check()
          }
        }
        const r = Clients.admit(ledger, c, ["m"], undefined, now)
        if (!Clients.isRefusal(r))
          pending.push({ at: i + s.settleAfter, settle: () => r.settle(reserve * s.share, s.ok) })
        check()
      })
      for (const p of pending) {
        p.settle()
        check()
      }
      const a = ledger.get("prop")!
      assert.strictEqual(a.reserved < 1e-9, true)
      assert.isAtMost(a.spent, budget + 1e-9)
    }
  )

  it("a daily budget rolls over at 00:00 UTC; weekly on Monday; monthly on the 1st", () => {
    for (const [period, before, after] of [
      ["daily", Date.UTC(2026, 0, 5, 23, 59), Date.UTC(2026, 0, 6, 0, 0)],
      ["weekly", Date.UTC(2026, 0, 11, 23, 59), Date.UTC(2026, 0, 12, 0, 0)], // Sun → Mon
      ["monthly", Date.UTC(2026, 0, 31, 23, 59), Date.UTC(2026, 1, 1, 0, 0)]
    ] as const) {
      const ledger = Clients.makeLedger()
      const c: GatewayConfig.ClientConfig = {
        ...client(1, 1),
        budget: { usd: 1, period, reserveUsd: 1, usdPerToken: undefined }
      }
      const first = Clients.admit(ledger, c, ["m"], undefined, before)
      assert.isFalse(Clients.isRefusal(first))
      ;(first as Clients.Charge).settle(1, true)
      const refused = Clients.admit(ledger, c, ["m"], undefined, after - 1)
      assert.isTrue(Clients.isRefusal(refused))
      assert.strictEqual((refused as Clients.Refusal).resetAt, after)
      assert.isFalse(Clients.isRefusal(Clients.admit(ledger, c, ["m"], undefined, after)), period)
    }
  })

  it("the estimate is max_tokens × usdPerToken when both are known", () => {
    const b = { usd: 1, period: "daily" as const, reserveUsd: 0.01, usdPerToken: 0.000002 }
    assert.closeTo(Clients.estimate(b, 1000), 0.002, 1e-12)
    assert.strictEqual(Clients.estimate(b, undefined), 0.01)
    assert.strictEqual(Clients.estimate({ ...b, usdPerToken: undefined }, 1000), 0.01)
  })

  it("the price table's worst case: the dearest model, max_tokens or the model's cap or 4096; a client's own pricing wins", () => {
    const table = Prices.makeTable()
    table.prices = Prices.parse({
      data: [
        { id: "a/cheap", pricing: { prompt: "0.000001", completion: "0.000002", request: "0" } },
        {
          id: "a/dear",
          pricing: { prompt: "0.00001", completion: "0.00002", request: "0.001" },
          top_provider: { max_completion_tokens: 1000 }
        },
        { id: "a/broken", pricing: { prompt: "n/a", completion: "1" } }
      ]
    })
    assert.deepStrictEqual([...table.prices.keys()], ["a/cheap", "a/dear"])
    // 200 body bytes: 100 prompt tokens assumed.
    assert.closeTo(Prices.worstCase(table, ["a/cheap"], 200, 50)!, 100 * 0.000001 + 50 * 0.000002, 1e-15)
    assert.closeTo(
      Prices.worstCase(table, ["a/cheap"], 200, undefined)!,
      100 * 0.000001 + 4096 * 0.000002,
      1e-15
    )
    assert.closeTo(
      Prices.worstCase(table, ["a/cheap", "a/dear"], 200, undefined)!,
      0.001 + 0.02 + 0.001,
      1e-15
    )
    assert.strictEqual(Prices.worstCase(table, ["a/cheap", "a/unknown"], 200, 50), undefined)
    const b = { usd: 1, period: "daily" as const, reserveUsd: 0.01, usdPerToken: undefined }
    assert.strictEqual(Clients.estimate({ ...b, priced: true }, 10, 0.5), 0.5)
    assert.strictEqual(Clients.estimate({ ...b, priced: true }, 10, undefined), 0.01)
    assert.strictEqual(Clients.estimate({ ...b, priced: false }, 10, 0.5), 0.01)
  })
})
