import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Runner from "../src/lib/Runner.js"
import * as BalancedHttpClientExample from "../src/examples/balanced-httpclient.js"
import * as Batch from "../src/examples/batch.js"
import * as ByModel from "../src/examples/by-model.js"
import * as ComposedStack from "../src/examples/composed-stack.js"
import * as ConcurrencyLimitedExample from "../src/examples/concurrency-limited.js"
import * as CreditAwareExample from "../src/examples/credit-aware.js"
import * as CustomStrategy from "../src/examples/custom-strategy.js"
import * as EffectAi from "../src/examples/effect-ai.js"
import * as FastPath from "../src/examples/fast-path.js"
import * as HealthAwareExample from "../src/examples/health-aware.js"
import * as Monitoring from "../src/examples/monitoring.js"
import * as RoundRobinExample from "../src/examples/round-robin.js"
import * as StreamingExample from "../src/examples/streaming.js"
import * as ThresholdExample from "../src/examples/threshold.js"
import * as WeightedExample from "../src/examples/weighted.js"

/** Runs an example in-process against its simulator, capturing what it prints. */
const run = <A, E>(example: Runner.Example<A, E>) => {
  const out = Runner.capture()
  return Effect.map(Runner.provide(example, { console: out.console }), (result) => ({
    result: result as A,
    text: out.lines.join("\n")
  }))
}

const noSecret = (text: string) => expect(text).not.toMatch(/sk-or-v1-[0-9a-f]{8}/)

describe("examples", () => {
  it.live("round-robin: 30 requests over 3 keys, 10 each", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(RoundRobinExample)
      expect(result.distribution).toEqual({ "key-1": 10, "key-2": 10, "key-3": 10 })
      expect(text).toContain("distribution of 30 requests")
      noSecret(text)
    })
  )

  it.live("weighted: 3:2:1 in every window of six", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(WeightedExample)
      expect(result.counts).toEqual({ "key-1": 30, "key-2": 20, "key-3": 10 })
      for (let w = 0; w + 6 <= result.sequence.length; w += 6) {
        const window = result.sequence.slice(w, w + 6)
        expect(window.filter((id) => id === "key-1")).toHaveLength(3)
        expect(window.filter((id) => id === "key-3")).toHaveLength(1)
      }
      expect(text).toContain("first 12 picks")
    })
  )

  it.live("credit-aware: the richest key takes the traffic, one GET /key per key", () =>
    Effect.gen(function* () {
      const { result } = yield* run(CreditAwareExample)
      expect(result.distribution).toEqual({ high: 20 })
      expect(result.lookups).toEqual({ low: 1, high: 1, mid: 1 })
      expect(result.credit.high).toBeLessThan(5)
    })
  )

  it.live("threshold: one key at a time, then a typed error when all are under", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(ThresholdExample)
      expect(result.switches.map((s) => s.to)).toEqual(["first", "second", "third"])
      expect(result.stopped).toMatch(/NoKeyAvailable/)
      expect(text).toContain("from request 0: first")
    })
  )

  it.live("batch: 100 prompts, one typed result each, all answered", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(Batch)
      expect(result.results).toBe(100)
      expect(result.succeeded).toBe(100)
      expect(text).toContain("100 prompts, 100 answered")
      noSecret(text)
    })
  )

  it.live("concurrency-limited: never more than 2 in flight per key upstream", () =>
    Effect.gen(function* () {
      const { result } = yield* run(ConcurrencyLimitedExample)
      expect(Object.values(result.distribution).reduce((a, b) => a + b, 0)).toBe(30)
      // Measured by the simulator: 30 at once over 3 keys fills both permits of every key, never more.
      expect(Object.values(result.maxInFlight)).toEqual([2, 2, 2])
    })
  )

  it.live(
    "effect-ai: @effect/ai-openai and @effect/ai-openrouter over the balanced client, past a revoked key",
    () =>
      Effect.gen(function* () {
        const { result, text } = yield* run(EffectAi)
        expect(result.openAi.reply).toMatch(/sim/)
        expect(result.openAi.streamed).toMatch(/sim/)
        expect(result.openAi.dimensions).toBe(8)
        expect(result.openAi.refused).toBe("HttpResponseError 400")
        expect(result.openRouter.reply).toMatch(/sim/)
        expect(result.openRouter.streamed).toMatch(/sim/)
        const revoked = result.keys.find((k) => k.id === "revoked")!
        expect(revoked.successes).toBe(0)
        expect(revoked.errors.Unauthorized).toBe(1)
        noSecret(text)
      })
  )

  it.live("by-model: each model only on its route's keys", () =>
    Effect.gen(function* () {
      const { result } = yield* run(ByModel)
      expect([...result.served["anthropic/claude-sonnet-4"]!].sort()).toEqual(["key-1", "key-2"])
      expect(result.served["openai/gpt-4o-mini"]).toEqual(["key-3"])
      expect(result.served["google/gemini-2.0-flash-001"]).toEqual(["key-4"])
    })
  )

  it.live("health-aware: every caller answered; revoked and broken keys ejected after few calls", () =>
    Effect.gen(function* () {
      const { result } = yield* run(HealthAwareExample)
      expect(result.succeeded).toBe(30)
      const state = Object.fromEntries(result.health.map((k) => [k.id, k.state]))
      expect(state.revoked).toBe("ejected")
      expect(state.good).toBe("healthy")
      expect(result.upstream.revoked?.["401"]).toBeLessThanOrEqual(2)
    })
  )

  it.live("monitoring: stats and metrics agree", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(Monitoring)
      expect(result.stats.successes).toBe(60)
      const key3 = result.stats.keys.find((k) => k.id === "monitored-3")!
      expect(key3.errors.ServerError).toBeGreaterThan(0)
      expect(result.metricLines).toContain(
        `or_balancer_requests_total{key="monitored-1",outcome="success"} ${result.stats.keys.find((k) => k.id === "monitored-1")!.successes}`
      )
      expect(text).toContain("p50 ms")
    })
  )

  it.live("composed-stack: all answered against the demo pool, no overspend", () =>
    Effect.gen(function* () {
      const { result } = yield* run(ComposedStack)
      expect(result.succeeded).toBe(300)
      expect(result.overspend).toBe(0)
      expect(result.distribution.revoked ?? 0).toBeLessThanOrEqual(1)
    })
  )

  it.live("custom-strategy: fastest-first converges on the fast key", () =>
    Effect.gen(function* () {
      const { result } = yield* run(CustomStrategy)
      expect(result.distribution.fast).toBeGreaterThanOrEqual(30)
    })
  )

  it.live("balanced-httpclient: plain HttpClient code fails over past a revoked key", () =>
    Effect.gen(function* () {
      const { result } = yield* run(BalancedHttpClientExample)
      expect(result.answers).toBe(12)
      const revoked = result.keys.find((k) => k.id === "revoked")
      expect(revoked?.successes ?? 0).toBe(0)
    })
  )

  it.live("streaming: fails over before the first chunk, then streams to the end", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(StreamingExample)
      expect(result.text.length).toBeGreaterThan(0)
      expect(result.cost).toBeGreaterThan(0)
      expect(result.keys.find((k) => k.id === "overloaded")?.errors).toEqual({ ServerError: 1 })
      expect(result.keys.find((k) => k.id === "steady")?.successes).toBe(1)
      expect(text).toContain("chunk 1")
    })
  )

  it.live("fast-path: first attempts with no fiber; those on the revoked key fail over in Effect", () =>
    Effect.gen(function* () {
      const { result, text } = yield* run(FastPath)
      expect(result.answers).toBe(9)
      // Round robin starts requests 1, 4 and 7 on the revoked key-2.
      expect(result.paths).toEqual({ fast: 6, failover: 3 })
      expect(result.served["key-2"]).toBeUndefined()
      expect((result.served["key-1"] ?? 0) + (result.served["key-3"] ?? 0)).toBe(9)
      expect(text).toContain("request 1: failover")
      noSecret(text)
    })
  )

  it("every example in src/examples is run by this file", () => {
    const covered = {
      "balanced-httpclient": BalancedHttpClientExample,
      batch: Batch,
      "by-model": ByModel,
      "composed-stack": ComposedStack,
      "concurrency-limited": ConcurrencyLimitedExample,
      "credit-aware": CreditAwareExample,
      "custom-strategy": CustomStrategy,
      "effect-ai": EffectAi,
      "fast-path": FastPath,
      "health-aware": HealthAwareExample,
      monitoring: Monitoring,
      "round-robin": RoundRobinExample,
      streaming: StreamingExample,
      threshold: ThresholdExample,
      weighted: WeightedExample
    }
    const onDisk = fs
      .readdirSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "../src/examples"))
      .filter((f) => f.endsWith(".ts"))
      .map((f) => f.slice(0, -3))
      .sort()
    expect(Object.keys(covered).sort()).toEqual(onDisk)
    for (const [name, m] of Object.entries(covered)) {
      expect(Effect.isEffect(m.program), name).toBe(true)
      expect(typeof m.main, name).toBe("function")
    }
  })
})
