// The simulator's faults: scripted in order, resets and stalls, random ones drawn by seed.
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { type Answer } from "./http.js"
import { basic, chat, MINI, messages, secret, statsWhen } from "./support.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

describe("Simulator", () => {
  it.scopedLive("plays a key's fault script exactly in order, then answers normally", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({
          keys: [
            {
              label: "scripted",
              secret: secret(0),
              faults: { script: ["ok", "500", "502", "503", "408", "429", "slow", "ok"] }
            }
          ],
          slowBody: { bytesPerWrite: 64, intervalMs: 1 }
        })
      )
      const answers: Array<Answer> = []
      for (let i = 0; i < 9; i++) answers.push(yield* chat(sim, secret(0), { model: MINI, messages }))
      assert.deepStrictEqual(
        answers.map((a) => a.status),
        [200, 500, 502, 503, 408, 429, 200, 200, 200]
      )
      assert.strictEqual(answers[1]!.json.error.metadata.error_type, "server")
      assert.strictEqual(answers[3]!.headers.get("retry-after"), "1")
      // A provider's 429: Retry-After but no X-RateLimit-* headers.
      assert.strictEqual(answers[5]!.headers.get("retry-after"), "1")
      assert.isNull(answers[5]!.headers.get("x-ratelimit-limit"))
      // The slow answer arrives whole.
      assert.strictEqual(answers[6]!.json.usage.completion_tokens, 32)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.scripted!.byOutcome, {
        "200": 4,
        "500": 1,
        "502": 1,
        "503": 1,
        "408": 1,
        "429": 1
      })
    })
  )

  it.scopedLive("resets connections and stalls until the client gives up", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({ keys: [{ label: "bad", secret: secret(0), faults: { script: ["reset", "stall", "ok"] } }] })
      )
      const reset = yield* Effect.exit(
        Effect.tryPromise(() =>
          fetch(`${sim.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${secret(0)}` },
            body: JSON.stringify({ model: MINI, messages })
          })
        )
      )
      assert.isTrue(Exit.isFailure(reset))
      const stalled = yield* Effect.exit(
        Effect.tryPromise(() =>
          fetch(`${sim.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${secret(0)}` },
            body: JSON.stringify({ model: MINI, messages }),
            signal: AbortSignal.timeout(300)
          })
        )
      )
      assert.isTrue(Exit.isFailure(stalled))
      yield* statsWhen(sim, (s) => s.inFlight === 0)
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.bad!.byOutcome, { reset: 1, stall: 1, "200": 1 })
    })
  )

  it.scopedLive("draws random faults deterministically for a given seed", () =>
    Effect.gen(function* () {
      const run = (seed: number) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const sim = yield* Simulator.make({
            seed,
            keys: [
              { label: "r", secret: secret(0), faults: { rates: { "500": 0.3, "502": 0.2, slow: 0.1 } } }
            ],
            latency: { kind: "uniform", min: 0, max: 2 },
            slowBody: { bytesPerWrite: 256, intervalMs: 0 }
          }).pipe(Scope.extend(scope))
          const statuses: Array<number> = []
          for (let i = 0; i < 40; i++)
            statuses.push((yield* chat(sim, secret(0), { model: MINI, messages })).status)
          yield* Scope.close(scope, Exit.void)
          return statuses
        })
      const first = yield* run(7)
      const again = yield* run(7)
      const other = yield* run(8)
      assert.deepStrictEqual(again, first)
      assert.notDeepEqual(other, first)
      assert.include(first, 200)
      assert.include(first, 500)
      assert.include(first, 502)
    })
  )
})
