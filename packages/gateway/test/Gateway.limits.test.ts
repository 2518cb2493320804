/**
 * OpenRouter's limit semantics through the gateway, against the simulator (issue 14, items 3 and 4):
 * a key at its own limit is not tried again until its `limit_reset`, however often its credit is
 * looked up meanwhile (402 and 403 "Key limit exceeded" alike); an account out of credit takes all
 * its keys out while the other account serves; and a revoked key gets no new attempt after its
 * first 401, even under a bare round-robin stack at concurrency 64.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post } from "./GatewaySupport.js"

const PENNY = "sim/penny" // $0.01 a request, nothing per token
const models: ReadonlyArray<Simulator.ModelConfig> = [
  { id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }
]
const secret = (i: number) => Simulator.simulatedSecret(11, i)
const penny = chatBody({ model: PENNY })

const outcomes = (sim: Simulator.Handle, label: string) =>
  Effect.map(sim.stats, (s) => s.keys[label]?.byOutcome ?? {})

describe("Gateway and OpenRouter's limits", () => {
  for (const keyLimitStatus of [402, 403] as const) {
    it.scopedLive(
      `a key refused for its own limit (${keyLimitStatus}) is not tried again before its limit_reset, across credit refreshes`,
      () =>
        Effect.gen(function* () {
          // $0.015 a day: one request, then $0.005 left, less than a request costs. Its `GET /key`
          // keeps saying $0.005 remain, which the 0.001 estimate would take as credit enough.
          const sim = yield* Simulator.make({
            models,
            keys: [
              {
                label: "capped",
                account: "acme",
                secret: secret(0),
                limit: 0.015,
                limitReset: "daily",
                keyLimitStatus
              },
              { label: "open", account: "acme", secret: secret(1) }
            ]
          })
          const gw = yield* Gateway.make(
            yield* configFor(sim, {
              // Credit looked up again every 100 ms.
              strategy: [
                { name: "threshold", threshold: 0.001, stay: false, estimate: 0.001, ttlMs: 100 },
                { name: "round-robin" }
              ]
            })
          )
          for (let i = 0; i < 12; i++) {
            const r = yield* post(`${gw.url}/v1/chat/completions`, penny)
            assert.strictEqual(r.status, 200, r.text)
            yield* Effect.sleep("80 millis")
          }
          // One success, one refusal, and nothing more for the rest of the day.
          assert.deepStrictEqual(yield* outcomes(sim, "capped"), { "200": 1, [keyLimitStatus]: 1 })
          assert.deepStrictEqual(yield* outcomes(sim, "open"), { "200": 11 })
        })
    )
  }

  it.scopedLive("an account out of credit takes all its keys out; the other account's key serves", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        models,
        keys: [
          { label: "a1", account: "one", secret: secret(0) },
          { label: "a2", account: "one", secret: secret(1) },
          { label: "b1", account: "two", secret: secret(2) }
        ],
        accounts: { one: { totalCredits: 0.01 }, two: { totalCredits: 5 } }
      })
      const gw = yield* Gateway.make(
        yield* configFor(sim, {
          accounts: { one: {}, two: {} },
          keys: [
            { id: "a1", secretEnv: "KEY_A1", account: "one" },
            { id: "a2", secretEnv: "KEY_A2", account: "one" },
            { id: "b1", secretEnv: "KEY_B1", account: "two" }
          ],
          strategy: [{ name: "health-aware" }, { name: "round-robin" }]
        })
      )
      for (let i = 0; i < 10; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, penny)
        assert.strictEqual(r.status, 200, r.text)
      }
      // a1 spends the account's last cent; a2's 402 (openrouter_credits) takes a1 out with it.
      assert.deepStrictEqual(yield* outcomes(sim, "a1"), { "200": 1 })
      assert.deepStrictEqual(yield* outcomes(sim, "a2"), { "402": 1 })
      assert.deepStrictEqual(yield* outcomes(sim, "b1"), { "200": 9 })
    })
  )

  it.scopedLive("with the account's management key, a key's credit is bounded by its account's balance", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        models,
        keys: [
          { label: "a1", account: "one", secret: secret(0) }, // no limit of its own
          { label: "admin", account: "one", secret: secret(1), management: true },
          { label: "b1", account: "two", secret: secret(2) }
        ],
        accounts: { one: { totalCredits: 0.05 }, two: { totalCredits: 5 } }
      })
      const gw = yield* Gateway.make(
        yield* configFor(sim, {
          accounts: { one: { managementKeyEnv: "KEY_ADMIN" }, two: {} },
          keys: [
            { id: "a1", secretEnv: "KEY_A1", account: "one" },
            { id: "b1", secretEnv: "KEY_B1", account: "two" }
          ],
          strategy: [
            { name: "threshold", threshold: 0.02, stay: false, estimate: 0.01 },
            { name: "round-robin" }
          ]
        })
      )
      for (let i = 0; i < 12; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, penny)
        assert.strictEqual(r.status, 200, r.text)
      }
      // a1 is left alone below $0.02 of its account's $0.05, never reaching the account's 402.
      const a1 = yield* outcomes(sim, "a1")
      assert.isUndefined(a1["402"])
      assert.isAtLeast(a1["200"] ?? 0, 1)
      // The account keeps what the threshold leaves: it was never spent to nothing.
      assert.isAbove((yield* sim.stats).accounts.one?.balance ?? 0, 0)
      // A management key's variable that is not set is refused by its path.
      const missing = yield* Effect.flip(
        configFor(sim, {
          accounts: { one: { managementKeyEnv: "NOT_SET" }, two: {} },
          keys: [{ id: "a1", secretEnv: "KEY_A1", account: "one" }]
        })
      )
      assert.strictEqual(missing.path, "accounts.one.managementKeyEnv")
    })
  )

  it.scopedLive(
    "a revoked key: upstream 401s at most the concurrency at its first 401, under a bare round-robin stack",
    () =>
      Effect.gen(function* () {
        const CONCURRENCY = 64
        const sim = yield* Simulator.make({
          models,
          latency: { kind: "fixed", ms: 20 },
          keys: ["k1", "k2", "k3", "dead"].map((label, i) => ({
            label,
            account: "acme",
            secret: secret(i),
            revoked: label === "dead"
          }))
        })
        const gw = yield* Gateway.make(yield* configFor(sim, { strategy: [{ name: "round-robin" }] }))
        const burst = Effect.all(
          Array.from({ length: 8 * CONCURRENCY }, () => post(`${gw.url}/v1/chat/completions`, penny)),
          { concurrency: CONCURRENCY }
        )
        const first = yield* burst
        assert.deepStrictEqual(
          first.filter((r) => r.status !== 200).map((r) => r.status),
          []
        )
        const unauthorized = (yield* outcomes(sim, "dead"))["401"] ?? 0
        // Only attempts in flight when the first 401 came (at most the concurrency) reached it.
        assert.isAtLeast(unauthorized, 1)
        assert.isAtMost(unauthorized, CONCURRENCY)
        // And none after: a second burst sends it nothing.
        const second = yield* burst
        assert.strictEqual(second.filter((r) => r.status !== 200).length, 0)
        assert.strictEqual((yield* outcomes(sim, "dead"))["401"] ?? 0, unauthorized)
        console.log(
          `revoked key: ${unauthorized} upstream 401s over ${16 * CONCURRENCY} requests at concurrency ${CONCURRENCY}`
        )
      })
  )
})
