import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, type Key, StateStore } from "@or-balancer/core"
import { CreditLedger } from "@or-balancer/strategies"
import { Effect, FastCheck as fc } from "effect"
import { key } from "./util.js"

// `tryReserveBest` finds the richest admitted key through a tournament tree kept beside the ledger
// (not a pass over the pool per reservation). Held to the plain rule, read off the snapshot: the
// key with the most live credit among those the gate admits with at least the amount left (ties:
// first in pool order), over reservations, settlements and 402s changing the balances.

const nanos = (usd: number) => Math.round(usd * 1e9)

const op = fc.oneof(
  fc.record({
    _tag: fc.constant("reserve" as const),
    cents: fc.integer({ min: 0, max: 6 }),
    refused: fc.array(fc.nat(200), { maxLength: 8 })
  }),
  fc.record({ _tag: fc.constant("settle" as const), which: fc.nat(), cents: fc.integer({ min: 0, max: 8 }) }),
  fc.record({ _tag: fc.constant("exhaust" as const), at: fc.nat(200) }),
  // The same keys in a new array (a pool change): the tree is built again.
  fc.record({ _tag: fc.constant("repool" as const) })
)

describe("CreditLedger.tryReserveBest", () => {
  it.effect.prop(
    "reserves on the richest admitted key with enough left, ties to the first, as a scan would",
    {
      // Cents per key; null: no limit.
      balances: fc.array(fc.option(fc.integer({ min: 0, max: 40 }), { nil: null, freq: 8 }), {
        minLength: 1,
        maxLength: 120
      }),
      ops: fc.array(op, { minLength: 1, maxLength: 60 })
    },
    ({ balances, ops }) =>
      Effect.gen(function* () {
        let ks: ReadonlyArray<Key.Key> = balances.map((_, i) => key(`k${i}`))
        const memory = yield* CreditLookup.makeMemory(
          Object.fromEntries(
            balances.map((c, i) => [`k${i}`, CreditLookup.keyInfo(c === null ? null : c / 100)])
          )
        )
        const ledger = yield* CreditLedger.make({ ttl: "1 hour" }).pipe(
          Effect.provideService(StateStore.StateStore, yield* StateStore.makeMemory),
          Effect.provideService(CreditLookup.CreditLookup, memory.service)
        )
        const held: Array<CreditLedger.Reserved> = []
        for (const o of ops) {
          switch (o._tag) {
            case "reserve": {
              const refused = new Set(o.refused.map((i) => `k${i % ks.length}`))
              const include = (k: Key.Key) => !refused.has(k.id)
              // Every key looked up first, so the snapshot holds them all.
              yield* ledger.balances(ks, () => true)
              const snapshot = new Map((yield* ledger.snapshot).map((e) => [e.id, e.available]))
              let want: string | undefined
              let wantLive = -Infinity
              for (const k of ks) {
                const a = snapshot.get(k.id)
                const live = a === undefined ? -Infinity : a === null ? Infinity : nanos(a)
                if (include(k) && live >= nanos(o.cents / 100) && live > wantLive) {
                  want = k.id
                  wantLive = live
                }
              }
              const got = yield* ledger.tryReserveBest(ks, include, o.cents / 100)
              expect(got?.key.id).toBe(want)
              if (got !== undefined) held.push(got)
              break
            }
            case "settle": {
              if (held.length === 0) break
              const [h] = held.splice(o.which % held.length, 1)
              const done = h!.reservation.settle(o.cents / 100)
              if (Effect.isEffect(done)) yield* done
              break
            }
            case "exhaust":
              yield* ledger.exhaust(ks[o.at % ks.length]!)
              break
            case "repool":
              ks = [...ks]
              break
          }
        }
      }),
    { fastCheck: { numRuns: 120 } }
  )
})
