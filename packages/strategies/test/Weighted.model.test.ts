import { describe, expect, it } from "@effect/vitest"
import { type Key, KeyPool, KeySelector, StateStore } from "@or-balancer/core"
import { Weighted } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import { key, refuse, request } from "./util.js"

// Weighted keeps its running totals lazily (a heap per distinct weight, not a pass over every key
// per pick). These properties hold it to nginx's plain algorithm, written out below as the model:
// the same key on every pick, whatever the weights, gates, tried keys, and keys going in and out.

/** nginx's smooth weighted round robin, one pass over the pool per pick, as Weighted did it. */
class Model {
  private readonly totals = new Map<string, number>()
  pick(keys: ReadonlyArray<Key.Key>, req: KeySelector.SelectRequest): string | undefined {
    if (req.only !== undefined) return KeySelector.isCandidate(req, req.only) ? req.only.id : undefined
    let total = 0
    let best: Key.Key | undefined
    let bestValue = -Infinity
    for (const k of keys) {
      if (!KeySelector.isCandidate(req, k)) continue
      const v = (this.totals.get(k.id) ?? 0) + k.weight
      this.totals.set(k.id, v)
      total += k.weight
      if (v > bestValue) {
        best = k
        bestValue = v
      }
    }
    if (best !== undefined) this.totals.set(best.id, bestValue - total)
    return best?.id
  }
}

const build = (ks: ReadonlyArray<Key.Key>) =>
  Effect.map(
    Layer.build(
      Layer.provideMerge(
        Weighted.layer(),
        Layer.mergeAll(KeyPool.layer(ks).pipe(Layer.orDie), StateStore.layerMemory)
      )
    ),
    (ctx) => ({
      selector: Context.get(ctx, KeySelector.KeySelector),
      pool: Context.get(ctx, KeyPool.KeyPool)
    })
  )

const picked = (d: KeySelector.Decision): string | undefined => {
  if (KeySelector.isWait(d)) throw new Error("weighted never waits")
  if (KeySelector.isNoKeyAvailable(d)) return undefined
  d.unsafeReport(KeySelector.cancelled())
  return d.key.id
}

const weight = fc.integer({ min: 1, max: 9 })
const step = fc.oneof(
  // A pick: some keys refused by the gate, some already tried, or kept to one key.
  fc.record({
    _tag: fc.constant("pick" as const),
    refused: fc.array(fc.nat(40), { maxLength: 3 }),
    tried: fc.array(fc.nat(40), { maxLength: 2 }),
    only: fc.option(fc.nat(40), { nil: undefined })
  }),
  // Many picks where every key takes part.
  fc.record({ _tag: fc.constant("run" as const), picks: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ _tag: fc.constant("add" as const), weight }),
  fc.record({ _tag: fc.constant("remove" as const), at: fc.nat(40) }),
  fc.record({ _tag: fc.constant("reweigh" as const), at: fc.nat(40), weight })
)

describe("Weighted against nginx's plain algorithm", () => {
  it.effect.prop(
    "the same pick every time, with gates, tried keys, kept keys, and keys going in, out and reweighed",
    {
      weights: fc.array(weight, { minLength: 1, maxLength: 12 }),
      steps: fc.array(step, { minLength: 1, maxLength: 40 })
    },
    ({ steps, weights }) =>
      Effect.scoped(
        Effect.gen(function* () {
          let next = weights.length
          let ks = weights.map((w, i) => key(`k${i}`, { weight: w }))
          const { pool, selector } = yield* build(ks)
          const model = new Model()
          const idAt = (i: number) => ks[i % ks.length]!.id
          const same = (req: KeySelector.SelectRequest) => {
            const want = model.pick(ks, req)
            expect(picked(selector.decide(req))).toBe(want)
          }
          for (const s of steps) {
            switch (s._tag) {
              case "pick": {
                if (ks.length === 0) break
                const req = request({
                  ...(s.refused.length > 0 ? { gate: refuse(...s.refused.map(idAt)) } : {}),
                  tried: new Set(s.tried.map(idAt))
                })
                same(s.only === undefined ? req : KeySelector.withOnly(req, ks[s.only % ks.length]!))
                break
              }
              case "run":
                for (let i = 0; i < s.picks && ks.length > 0; i++) same(request())
                break
              case "add":
                ks = [...ks, key(`k${next++}`, { weight: s.weight })]
                yield* pool.set(ks)
                break
              case "remove":
                if (ks.length <= 1) break
                ks = ks.filter((_, i) => i !== s.at % ks.length)
                yield* pool.set(ks)
                break
              case "reweigh": {
                const at = s.at % ks.length
                ks = ks.map((k, i) => (i === at ? key(k.id, { weight: s.weight }) : k))
                yield* pool.set(ks)
                break
              }
            }
          }
        })
      ),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect.prop(
    "exact shares in every full cycle over a large pool of random weights",
    {
      weights: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 50, maxLength: 300 }),
      cycles: fc.integer({ min: 1, max: 2 })
    },
    ({ cycles, weights }) =>
      Effect.scoped(
        Effect.gen(function* () {
          const ks = weights.map((w, i) => key(`k${i}`, { weight: w }))
          const { selector } = yield* build(ks)
          const total = weights.reduce((a, b) => a + b, 0)
          for (let c = 0; c < cycles; c++) {
            const counts = new Map<string, number>()
            for (let i = 0; i < total; i++) {
              const id = picked(selector.decide(request()))!
              counts.set(id, (counts.get(id) ?? 0) + 1)
            }
            ks.forEach((k) => expect(counts.get(k.id) ?? 0).toBe(k.weight))
          }
        })
      ),
    { fastCheck: { numRuns: 20 } }
  )
})
