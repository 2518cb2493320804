import { describe, expect, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Cycle, RoundRobinClient, seedErrorTable } from "../src/lib/SeedRoundRobin.js"

describe("seed RoundRobinClient port", () => {
  it("cycles like itertools.cycle", () => {
    const c = new Cycle(["a", "b", "c"])
    expect(Array.from({ length: 7 }, () => c.next())).toEqual(["a", "b", "c", "a", "b", "c", "a"])
  })

  it("follows the seed's error table: 429 and 5xx retried, 401/402/404 not", () => {
    expect(seedErrorTable(429)).toBe("retry-with-backoff")
    expect(seedErrorTable(500)).toBe("retry-with-backoff")
    expect(seedErrorTable(503)).toBe("retry-with-backoff")
    expect(seedErrorTable(401)).toBe("fail")
    expect(seedErrorTable(402)).toBe("fail")
    expect(seedErrorTable(404)).toBe("fail")
  })

  it.live("against the simulator: a revoked key fails at once, a 500 is retried on the same key", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 3,
          keys: [
            { label: "revoked", secret: Simulator.simulatedSecret(3, 0), revoked: true },
            { label: "hiccup", secret: Simulator.simulatedSecret(3, 1), faults: { script: ["500"] } }
          ]
        })
        const client = new RoundRobinClient(
          sim.keys.map((k) => Redacted.value(k.secret)),
          { baseUrl: sim.baseUrl, backoffMs: 1 }
        )
        const body = {
          model: "openai/gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 4
        }
        const first = yield* Effect.promise(() => client.chat(body))
        const second = yield* Effect.promise(() => client.chat(body))
        expect(first).toMatchObject({ ok: false, status: 401, attempts: 1 })
        expect(second).toMatchObject({ ok: true, status: 200, attempts: 2 })
        const stats = yield* sim.stats
        expect(stats.keys.revoked?.byOutcome).toEqual({ "401": 1 })
        expect(stats.keys.hiccup?.byOutcome).toEqual({ "500": 1, "200": 1 })
      })
    )
  )
})
