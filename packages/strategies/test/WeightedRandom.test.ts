import { describe, expect, it } from "@effect/vitest"
import { KeyPool, KeySelector, StateStore } from "@or-balancer/core"
import { WeightedRandom } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer, Random } from "effect"
import { key, request } from "./util.js"

// Over the whole pool (no gate) WeightedRandom draws by a binary search over running sums of the
// weights; over a gate's candidates, by a pass. Two selectors seeded alike must draw the same keys
// either way, whatever the weights and pool changes.

const build = (weights: ReadonlyArray<number>, seed: number) =>
  Effect.map(
    Layer.build(
      Layer.provideMerge(
        WeightedRandom.layer,
        Layer.mergeAll(
          KeyPool.layer(weights.map((w, i) => key(`k${i}`, { weight: w }))).pipe(Layer.orDie),
          StateStore.layerMemory
        )
      )
    ).pipe(Effect.withRandom(Random.make(seed))),
    (ctx) => ({
      selector: Context.get(ctx, KeySelector.KeySelector),
      pool: Context.get(ctx, KeyPool.KeyPool)
    })
  )

const idOf = (d: KeySelector.Decision) => (KeySelector.isLease(d) ? d.key.id : d._tag)
const admitAll: KeySelector.Gate = () => undefined

describe("WeightedRandom over the whole pool", () => {
  it.effect.prop(
    "the same draws as a pass over the candidates, across pool changes",
    {
      weights: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 2, maxLength: 300 }),
      more: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 }),
      seed: fc.integer(),
      draws: fc.integer({ min: 1, max: 200 })
    },
    ({ draws, more, seed, weights }) =>
      Effect.scoped(
        Effect.gen(function* () {
          const summed = yield* build(weights, seed)
          const passed = yield* build(weights, seed)
          const compare = () => {
            for (let i = 0; i < draws; i++)
              expect(idOf(summed.selector.decide(request()))).toBe(
                idOf(passed.selector.decide(request({ gate: admitAll })))
              )
          }
          compare()
          const grown = [...weights, ...more].map((w, i) => key(`k${i}`, { weight: w }))
          yield* summed.pool.set(grown)
          yield* passed.pool.set(grown)
          compare()
        })
      ),
    { fastCheck: { numRuns: 60 } }
  )
})
