/**
 * Where Trouble's overspend came from (issue 14: $0.09 past the $0.50 key's cap, unexplained).
 * OpenRouter, and the simulator after it, checks a key's cap when a request arrives and bills it
 * when it ends. The threshold strategy reserved nothing for a request in flight (`estimate`
 * defaults to 0), so while a key near its cap had requests in flight the gateway still saw its
 * whole remaining credit: every one of them passed the arrival check, and the key ended past its
 * cap by as many. Reserving the price in flight keeps it at its cap exactly, and so does the
 * default, which learns the price from the answers.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import { configFor, post, simKeys } from "./GatewaySupport.js"

const PENNY = "sim/penny-a-request"

/** `capped` may spend $0.05 (five requests); `steady` is unlimited; every answer takes 40 ms. */
const run = (threshold: Record<string, unknown>) =>
  Effect.gen(function* () {
    const sim = yield* Simulator.make({
      seed: 7,
      models: [{ id: PENNY, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }],
      keys: simKeys(["capped", "steady"]).map((k) => (k.label === "capped" ? { ...k, limit: 0.05 } : k)),
      latency: { kind: "fixed", ms: 40 }
    })
    const gw = yield* Gateway.make(
      yield* configFor(sim, {
        strategy: [
          { name: "threshold", threshold: 0.01, stay: false, ...threshold },
          { name: "round-robin" }
        ],
        hedge: false
      })
    )
    const body = JSON.stringify({ model: PENNY, messages: [{ role: "user", content: "hi" }], max_tokens: 4 })
    const answers = yield* Effect.all(
      Array.from({ length: 24 }, () => post(`${gw.url}/v1/chat/completions`, body)),
      { concurrency: 12 }
    )
    for (const a of answers) assert.strictEqual(a.status, 200, a.text)
    return yield* sim.stats
  })

describe("a capped key's cap under concurrency", () => {
  it.scopedLive("reserving each request's price while in flight: the key spends exactly its cap", () =>
    Effect.gen(function* () {
      const stats = yield* run({ estimate: 0.01 })
      assert.strictEqual(stats.overspend, 0)
      assert.strictEqual(stats.keys["capped"]!.byOutcome["200"], 5)
      assert.strictEqual(stats.spend, 0.24)
    })
  )

  it.scopedLive(
    "the default learns what a request costs and reserves it: the key spends exactly its cap",
    () =>
      Effect.gen(function* () {
        const stats = yield* run({})
        assert.strictEqual(stats.overspend, 0)
        assert.strictEqual(stats.keys["capped"]!.byOutcome["200"], 5)
        assert.strictEqual(stats.spend, 0.24)
      })
  )

  it.scopedLive(
    "the cause: with nothing reserved, the requests in flight near the cap all pass its check",
    () =>
      Effect.gen(function* () {
        const stats = yield* run({ estimate: 0 })
        // Six requests in flight on each key at once: the capped key served more than its five.
        assert.isAbove(stats.overspend, 0)
        assert.isAbove(stats.keys["capped"]!.byOutcome["200"]!, 5)
        assert.strictEqual(
          stats.keys["capped"]!.overspentRequests,
          stats.keys["capped"]!.byOutcome["200"]! - 5
        )
      })
  )
})
