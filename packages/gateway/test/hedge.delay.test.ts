import { assert, describe, it } from "@effect/vitest"
import { learnedDelay } from "../src/internal/hedge.js"

// The learned hedge delay: P95_FACTOR (3) times the p95 of the samples, at least `minMs`. The p95
// is the sorted samples' element at floor(0.95 × (n − 1)); checked against a plain sort.
const bySort = (samples: Float64Array, minMs: number) => {
  const sorted = Array.from(samples).sort((a, b) => a - b)
  return Math.max(minMs, Math.ceil(3 * sorted[Math.floor(0.95 * (sorted.length - 1))]!))
}

describe("hedge learned delay", () => {
  it("is three times the p95, as a full sort reads it, for any order and repeats", () => {
    let seed = 7
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    for (let round = 0; round < 300; round++) {
      const n = 1 + Math.floor(next() * 256)
      const samples = new Float64Array(n)
      // Few distinct values in some rounds (repeats), wide ones in others.
      const spread = round % 3 === 0 ? 4 : 5000
      for (let i = 0; i < n; i++) samples[i] = Math.floor(next() * spread) + (round % 2 === 0 ? 0 : next())
      const copy = samples.slice()
      assert.strictEqual(learnedDelay(samples, 0), bySort(samples, 0))
      // The caller's samples are left as they were.
      assert.deepStrictEqual(Array.from(samples), Array.from(copy))
    }
  })

  it("is at least minMs", () => {
    assert.strictEqual(learnedDelay(new Float64Array([1, 2, 3]), 200), 200)
    assert.strictEqual(learnedDelay(new Float64Array([100, 5, 90]), 200), 270)
  })
})
