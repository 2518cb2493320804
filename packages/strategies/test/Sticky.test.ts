import { describe, expect, it } from "@effect/vitest"
import { KeyPool } from "@or-balancer/core"
import { RoundRobin, Sticky } from "@or-balancer/strategies"
import { Effect, Layer } from "effect"
import { base, key, keys, pick, refuse } from "./util.js"

const env = Sticky.layer.pipe(
  Layer.provideMerge(RoundRobin.layer()),
  Layer.provideMerge(base(keys("a", "b", "c", "d")))
)

describe("Sticky", () => {
  it.effect("one affinity id, one key; moves only while that key is ineligible", () =>
    Effect.gen(function* () {
      const first = yield* pick({ affinity: "session-1" })
      for (let i = 0; i < 20; i++) expect(yield* pick({ affinity: "session-1" })).toBe(first)
      const moved = yield* pick({ affinity: "session-1", gate: refuse(first) })
      expect(moved).not.toBe(first)
      expect(yield* pick({ affinity: "session-1", gate: refuse(first) })).toBe(moved)
      expect(yield* pick({ affinity: "session-1" })).toBe(first)
    }).pipe(Effect.provide(env))
  )

  it.effect("10,000 sessions: spread evenly, and adding a key moves about 1/N, all to the new key", () =>
    Effect.gen(function* () {
      const sessions = Array.from({ length: 10_000 }, (_, i) => `s-${i}`)
      const before = yield* Effect.forEach(sessions, (s) => pick({ affinity: s }))
      for (const id of ["a", "b", "c", "d"]) {
        const n = before.filter((k) => k === id).length
        expect(n).toBeGreaterThan(2_200)
        expect(n).toBeLessThan(2_800)
      }
      yield* Effect.flatMap(KeyPool.KeyPool, (p) => p.add(key("e")))
      const after = yield* Effect.forEach(sessions, (s) => pick({ affinity: s }))
      const moved = sessions.filter((_, i) => after[i] !== before[i])
      expect(moved.length / sessions.length).toBeGreaterThan(0.17)
      expect(moved.length / sessions.length).toBeLessThan(0.23)
      expect(moved.every((s) => after[sessions.indexOf(s)] === "e")).toBe(true)
    }).pipe(Effect.provide(env))
  )
})
