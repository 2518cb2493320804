import { describe, expect, it } from "@effect/vitest"
import { KeySelector, Monitor, UpstreamError } from "@or-balancer/core"
import { Effect, Metric, MetricState } from "effect"
import { keys, secretOf } from "./fixtures.js"

describe("Monitor", () => {
  it.effect("per-key counts, error rate, spend, p50/p99 in a snapshot", () =>
    Effect.gen(function* () {
      const monitor = yield* Monitor.make
      const [a, b] = keys(["mon-a", "mon-b"])
      for (let i = 1; i <= 100; i++) {
        yield* monitor.started(a!)
        yield* monitor.finished(a!, KeySelector.success(`${i} millis`, 0.01))
      }
      yield* monitor.started(b!)
      yield* monitor.finished(
        b!,
        KeySelector.failure("5 millis", new UpstreamError.Timeout({ message: "t" }))
      )
      const stats = yield* monitor.stats
      expect(stats.requests).toBe(101)
      const sa = stats.keys.find((k) => k.id === "mon-a")!
      expect(sa.successes).toBe(100)
      expect(sa.spend).toBeCloseTo(1, 10)
      expect(sa.latencyMs.p50).toBeGreaterThanOrEqual(50)
      expect(sa.latencyMs.p50).toBeLessThanOrEqual(55)
      expect(sa.latencyMs.p99).toBeGreaterThanOrEqual(99)
      expect(sa.latencyMs.p99).toBeLessThanOrEqual(100)
      expect(sa.share).toBeCloseTo(100 / 101)
      const sb = stats.keys.find((k) => k.id === "mon-b")!
      expect(sb.errorRate).toBe(1)
      expect(sb.errors).toEqual({ Timeout: 1 })
      expect(stats.inFlight).toBe(0)
    })
  )

  it.effect("a caller's fault (400, unknown model) is no request of the key's, only a key-less count", () =>
    Effect.gen(function* () {
      const monitor = yield* Monitor.make
      const [k] = keys(["mon-caller"])
      const before = (yield* Metric.value(
        Metric.tagged(Monitor.metrics.requestErrors, "reason", "BadRequest")
      )).count
      yield* monitor.started(k!)
      yield* monitor.finished(
        k!,
        KeySelector.failure("5 millis", new UpstreamError.BadRequest({ message: "bad", status: 400 }))
      )
      const s = (yield* monitor.stats).keys.find((e) => e.id === "mon-caller")!
      expect([s.requests, s.failures, s.errorRate, s.inFlight]).toEqual([0, 0, 0, 0])
      expect(s.errors).toEqual({})
      const after = (yield* Metric.value(
        Metric.tagged(Monitor.metrics.requestErrors, "reason", "BadRequest")
      )).count
      expect(after - before).toBe(1)
    })
  )

  it.effect("Effect metrics are tagged by key id and never carry a secret", () =>
    Effect.gen(function* () {
      const monitor = yield* Monitor.make
      const [k] = keys(["metric-key-1"])
      yield* monitor.started(k!)
      yield* monitor.finished(k!, KeySelector.success("10 millis", 0.5))
      const counter = Metric.tagged(
        Metric.tagged(Monitor.metrics.requests, "key", "metric-key-1"),
        "outcome",
        "success"
      )
      const state = yield* Metric.value(counter)
      expect(state.count).toBe(1)
      const snapshot = Metric.unsafeSnapshot()
      const text = JSON.stringify(snapshot.map((p) => [p.metricKey.name, p.metricKey.tags]))
      expect(text).toContain("metric-key-1")
      expect(text).not.toContain(secretOf("metric-key-1"))
      expect(MetricState.isCounterState(state)).toBe(true)
    })
  )

  it.effect("memory stays constant: the histogram does not grow with samples", () =>
    Effect.gen(function* () {
      const monitor = yield* Monitor.make
      const [k] = keys(["mem"])
      const run = (n: number) =>
        Effect.gen(function* () {
          for (let i = 0; i < n; i++) {
            yield* monitor.started(k!)
            yield* monitor.finished(k!, KeySelector.success(i % 1000, 0))
          }
        })
      yield* run(1_000)
      const s1 = JSON.stringify(yield* monitor.stats).length
      yield* run(50_000)
      const s2 = JSON.stringify(yield* monitor.stats).length
      // The snapshot (a proxy for what is kept) does not grow with the number of samples.
      expect(s2).toBeLessThan(s1 + 40)
    })
  )
})
