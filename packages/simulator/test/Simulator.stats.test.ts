// The simulator's stats: concurrency high-water marks, stats over HTTP, recent requests.
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import { request } from "./http.js"
import { basic, chat, MINI, messages, secret, statsWhen } from "./support.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

describe("Simulator", () => {
  it.scopedLive("tracks the concurrency high-water mark globally and per key, and resets stats", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({
          keys: [{ label: "s", secret: secret(0), faults: { script: ["stall", "stall", "stall", "stall"] } }]
        })
      )
      const controller = new AbortController()
      for (let i = 0; i < 4; i++) {
        yield* Effect.forkScoped(
          Effect.promise(() =>
            fetch(`${sim.baseUrl}/chat/completions`, {
              method: "POST",
              headers: { authorization: `Bearer ${secret(0)}` },
              body: JSON.stringify({ model: MINI, messages }),
              signal: controller.signal
            }).catch(() => undefined)
          )
        )
      }
      const busy = yield* statsWhen(sim, (s) => s.inFlight === 4)
      assert.strictEqual(busy.maxInFlight, 4)
      assert.strictEqual(busy.keys.s!.inFlight, 4)
      assert.strictEqual(busy.keys.s!.maxInFlight, 4)
      controller.abort()
      yield* statsWhen(sim, (s) => s.inFlight === 0)
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      const after = yield* sim.stats
      assert.strictEqual(after.maxInFlight, 4)
      assert.strictEqual(after.requests, 5)
      yield* sim.resetStats
      const reset = yield* sim.stats
      assert.strictEqual(reset.requests, 0)
      assert.strictEqual(reset.maxInFlight, 0)
      assert.deepStrictEqual(reset.keys.s!.byOutcome, {})
      assert.isAbove(reset.keys.s!.usage, 0) // state, not a stat
    })
  )

  it.scopedLive("serves its stats and a reset over HTTP for out-of-process benchmarks", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      yield* chat(sim, secret(0), { model: MINI, messages })
      yield* chat(sim, secret(3), { model: MINI, messages })
      const stats = yield* request(`${sim.url}/__simulator/stats`, {})
      assert.strictEqual(stats.status, 200)
      assert.deepStrictEqual(stats.json, yield* sim.stats)
      assert.notInclude(stats.text, "sk-or-")
      assert.strictEqual((yield* request(`${sim.url}/__simulator/reset`, { method: "POST" })).status, 200)
      assert.strictEqual((yield* sim.stats).requests, 0)
      assert.strictEqual((yield* request(`${sim.baseUrl}/nowhere`, {})).status, 404)
    })
  )

  it.scopedLive("remembers recent requests with their pass-through headers, never the key", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ requestsKept: 3 }))
      const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      yield* request(`${sim.baseUrl}/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${secret(0)}`,
          traceparent,
          "x-request-id": "req-1",
          "x-title": "or-balancer",
          "http-referer": "https://example.test"
        },
        body: JSON.stringify({ model: MINI, messages })
      })
      const first = (yield* sim.recentRequests)[0]!
      assert.strictEqual(first.route, "chat")
      assert.strictEqual(first.key, "a")
      assert.deepStrictEqual(
        { ...first.headers, "user-agent": undefined },
        {
          traceparent,
          "x-request-id": "req-1",
          "x-title": "or-balancer",
          "http-referer": "https://example.test",
          "user-agent": undefined
        }
      )
      for (const i of [1, 2, 50]) yield* chat(sim, secret(i), { model: MINI, messages })
      const recent = yield* sim.recentRequests
      assert.deepStrictEqual(
        recent.map((r) => r.key),
        ["b", "c", undefined]
      )
      const overHttp = yield* request(`${sim.url}/__simulator/requests`, {})
      assert.deepStrictEqual(overHttp.json, JSON.parse(JSON.stringify(recent))) // no `key` when unknown
      assert.notInclude(overHttp.text, "sk-or-")
    })
  )
})
