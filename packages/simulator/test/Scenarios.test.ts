import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Scenarios from "../src/Scenarios.js"
import * as Simulator from "../src/Simulator.js"
import { post } from "./http.js"

const messages = [{ role: "user", content: "hi" }]

describe("Scenarios", () => {
  for (const scenario of [Scenarios.trouble(3), Scenarios.chaos(3)]) {
    it.scopedLive(`${scenario.name}: decodes, starts, and charges exactly $0.01 a request`, () =>
      Effect.gen(function* () {
        yield* Simulator.decodeConfig(JSON.parse(JSON.stringify(scenario.config)))
        const sim = yield* Simulator.make(scenario.config)
        const secretOf = (label: string) => Redacted.value(sim.keys.find((k) => k.label === label)!.secret)
        const steady = sim.keys.find((k) => k.label.endsWith("-steady"))!
        const res = yield* post(sim, "/chat/completions", Redacted.value(steady.secret), {
          model: scenario.model,
          messages
        })
        assert.strictEqual(res.status, 200)
        assert.strictEqual(res.json.usage.cost, 0.01)
        const capped = sim.keys.find((k) => k.label.endsWith("-capped"))!
        // Lift the account's window so only the cap decides.
        yield* sim.updateAccount(capped.account, { rpm: null })
        const statuses = yield* Effect.forEach(
          Array.from({ length: 51 }, () => 0),
          () =>
            Effect.map(
              post(sim, "/chat/completions", secretOf(capped.label), { model: scenario.model, messages }),
              (r) => r.status
            )
        )
        assert.strictEqual(statuses.filter((s) => s === 200).length, 50)
        assert.strictEqual(statuses[50], 402)
        const revoked = sim.keys.find((k) => k.label.endsWith("-revoked"))!.label
        assert.strictEqual(
          (yield* post(sim, "/chat/completions", secretOf(revoked), { model: scenario.model, messages }))
            .status,
          401
        )
      })
    )
  }

  it("states what the accounts' windows admit", () => {
    assert.strictEqual(Scenarios.trouble().admittedPerSecond, 260)
    assert.strictEqual(Scenarios.chaos().admittedPerSecond, 130)
    assert.deepStrictEqual(
      [Scenarios.trouble().requests, Scenarios.trouble().concurrency, Scenarios.chaos().concurrency],
      [3_000, 32, 100]
    )
  })

  it.scopedLive("a stall with stallMs answers normally once it ends", () =>
    Effect.gen(function* () {
      const secret = Simulator.simulatedSecret(3, 0)
      const sim = yield* Simulator.make({
        keys: [{ label: "s", secret, faults: { script: ["stall"], stallMs: 300 } }]
      })
      const start = Date.now()
      const res = yield* post(sim, "/chat/completions", secret, { model: "openai/gpt-4o-mini", messages })
      assert.strictEqual(res.status, 200)
      assert.isAtLeast(Date.now() - start, 290)
      assert.deepStrictEqual((yield* sim.stats).keys.s!.byOutcome, { stall: 1, "200": 1 })
    })
  )
})
