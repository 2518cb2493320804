import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, KeyPool, KeySelector, StateStore } from "@or-balancer/core"
import {
  CreditLedger,
  LeastBusy,
  Random,
  RoundRobin,
  Sticky,
  Threshold,
  Weighted,
  WeightedRandom
} from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import { key, request } from "./util.js"

// `KeySelector.withOnly` keeps a request to one key, as a gate narrowed to that key does, but a
// strategy takes the key without asking the gate of every key in the pool. Threshold (`stay`) and
// Sticky keep to a key this way: with a gate, a 500-key pool cost them ~25–60 µs per decision.

const pool = (n: number) => Array.from({ length: n }, (_, i) => key(`k${i}`, { weight: 1 + (i % 3) }))

type Base = Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore>
const bases: ReadonlyArray<readonly [string, Base]> = [
  ["round robin", RoundRobin.layer()],
  ["weighted", Weighted.layer()],
  ["random", Random.layer],
  ["weighted random", WeightedRandom.layer],
  ["least busy", LeastBusy.layer]
]

const selectorOf = (layer: Base, n: number) =>
  Effect.map(
    Layer.build(
      Layer.provide(layer, Layer.mergeAll(KeyPool.layer(pool(n)).pipe(Layer.orDie), StateStore.layerMemory))
    ),
    (ctx) => Context.get(ctx, KeySelector.KeySelector)
  )

/** A gate that counts its calls, refusing the ids given. */
const counting = (refused: ReadonlySet<string> = new Set()) => {
  const counter = { calls: 0 }
  const gate: KeySelector.Gate = (k) => {
    counter.calls++
    return refused.has(k.id) ? { reason: "cooldown", until: 5_000 } : undefined
  }
  return { counter, gate }
}

const onlyGate =
  (id: string): KeySelector.Gate =>
  (k) =>
    k.id === id ? undefined : { reason: "ineligible" }

const leased = (d: KeySelector.Decision) => {
  if (!KeySelector.isLease(d)) throw new Error(`expected a lease, got ${d._tag}`)
  return d
}

describe("KeySelector.withOnly", () => {
  for (const [name, layer] of bases) {
    it.scoped(`${name}: leases the only key of a 500-key pool, asking the gate of no other key`, () =>
      Effect.gen(function* () {
        const selector = yield* selectorOf(layer, 500)
        const { counter, gate } = counting()
        const target = pool(500)[321]!
        const lease = leased(selector.decide(KeySelector.withOnly(request({ gate }), target)))
        expect(lease.key.id).toBe("k321")
        lease.unsafeReport(KeySelector.cancelled())
        expect(counter.calls).toBeLessThanOrEqual(2)
      })
    )
  }

  it.scoped("a refused only key is refused as a gate narrowed to it refuses it (reason, retryAfter)", () =>
    Effect.gen(function* () {
      const selector = yield* selectorOf(RoundRobin.layer(), 6)
      const ks = pool(6)
      const { gate } = counting(new Set(["k2", "k4"]))
      const viaOnly = selector.decide(KeySelector.withOnly(request({ gate }), ks[2]!))
      const viaGate = selector.decide(KeySelector.withGate(request({ gate }), onlyGate("k2")))
      expect(KeySelector.isNoKeyAvailable(viaOnly)).toBe(true)
      expect(viaOnly).toEqual(viaGate)
      // Already tried: "tried" from both.
      const tried = request({ tried: new Set(["k0", "k1", "k2", "k3", "k4", "k5"]) })
      expect(selector.decide(KeySelector.withOnly(tried, ks[3]!))).toEqual(
        selector.decide(KeySelector.withGate(tried, onlyGate("k3")))
      )
    })
  )

  for (const [name, layer] of bases.slice(0, 2)) {
    it.effect.prop(
      `${name}: the same choices and state as the equivalent gate, over any sequence`,
      { steps: fc.array(fc.option(fc.nat(6), { nil: undefined }), { minLength: 1, maxLength: 40 }) },
      ({ steps }) =>
        Effect.scoped(
          Effect.gen(function* () {
            const a = yield* selectorOf(layer, 7)
            const b = yield* selectorOf(layer, 7)
            const ks = pool(7)
            for (const step of steps) {
              // undefined: a free choice; i: kept to key i (k5 is refused by the gate).
              const gate: KeySelector.Gate = (k) => (k.id === "k5" ? { reason: "cooldown" } : undefined)
              const base = request({ gate })
              const da = step === undefined ? a.decide(base) : a.decide(KeySelector.withOnly(base, ks[step]!))
              const db =
                step === undefined
                  ? b.decide(base)
                  : b.decide(KeySelector.withGate(base, onlyGate(`k${step}`)))
              expect(KeySelector.isLease(da) ? da.key.id : da).toEqual(
                KeySelector.isLease(db) ? db.key.id : db
              )
            }
          })
        ),
      { fastCheck: { numRuns: 40 } }
    )
  }

  it.scoped("Threshold keeping to its key over 500 keys asks the gate above it of a few keys only", () =>
    Effect.gen(function* () {
      const ks = pool(500)
      const ctx = yield* Layer.build(
        Threshold.layer({ threshold: 0.5 }).pipe(
          Layer.provideMerge(Weighted.layer()),
          Layer.provideMerge(CreditLedger.layer()),
          Layer.provideMerge(
            CreditLookup.layerMemory(Object.fromEntries(ks.map((k) => [k.id, CreditLookup.keyInfo(10)])))
          ),
          Layer.provideMerge(Layer.mergeAll(KeyPool.layer(ks).pipe(Layer.orDie), StateStore.layerMemory))
        )
      )
      const selector = Context.get(ctx, KeySelector.KeySelector)
      // The first selection looks the credit up (a Wait) and picks the key to keep to.
      const first = yield* selector.select(request())
      yield* first.report(KeySelector.success(1, 0.01))
      const { counter, gate } = counting()
      for (let i = 0; i < 10; i++) {
        const lease = leased(selector.decide(request({ gate })))
        expect(lease.key.id).toBe(first.key.id)
        lease.unsafeReport(KeySelector.success(1, 0.01))
      }
      // Twice per decision: is the current key a candidate, and the inner strategy's check.
      expect(counter.calls).toBeLessThanOrEqual(30)
    })
  )

  it.scoped(
    "Sticky keeps a session to its key over 500 keys without asking the inner scan's gate of each",
    () =>
      Effect.gen(function* () {
        const ks = pool(500)
        const ctx = yield* Layer.build(
          Sticky.layer.pipe(
            Layer.provideMerge(RoundRobin.layer()),
            Layer.provideMerge(Layer.mergeAll(KeyPool.layer(ks).pipe(Layer.orDie), StateStore.layerMemory))
          )
        )
        const selector = Context.get(ctx, KeySelector.KeySelector)
        const owner = Sticky.owner("session-1", ks)!
        const { counter, gate } = counting()
        const lease = leased(selector.decide(request({ gate, affinity: "session-1" })))
        expect(lease.key.id).toBe(owner.id)
        // Sticky itself asks each key once (its owner among the candidates); the inner strategy no more.
        expect(counter.calls).toBeLessThanOrEqual(502)
      })
  )
})
