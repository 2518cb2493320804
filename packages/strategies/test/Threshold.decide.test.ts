import { describe, expect, it } from "@effect/vitest"
import { Balancer, CreditLookup, KeyPool, KeySelector, Monitor, StateStore } from "@or-balancer/core"
import { CreditLedger, RoundRobin, Threshold } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer, TestClock } from "effect"
import * as CreditPaths from "./creditPaths.js"
import { base, keys, refuse, request, decideNow } from "./util.js"

// Threshold.decide over RoundRobin: the same gate, choice, remembered key and reservation as
// `select`, synchronously; a `Wait` (nothing changed) whenever `select` would look a credit up
// or the inner selector would wait.

const infos = {
  a: CreditLookup.keyInfo(1),
  b: CreditLookup.keyInfo(0.5),
  c: CreditLookup.keyInfo(0.35)
  // d is unknown to the lookup: its lookups fail.
}
const ids = ["a", "b", "c", "d"]

const stack = (
  memory: CreditLookup.Service,
  options: Partial<Threshold.Options> = {},
  inner: Layer.Layer<
    KeySelector.KeySelector,
    never,
    KeyPool.KeyPool | StateStore.StateStore
  > = RoundRobin.layer(),
  store: Layer.Layer<StateStore.StateStore> = StateStore.layerMemory
) =>
  Threshold.layer({ threshold: 0.3, estimate: 0.1, ...options }).pipe(
    Layer.provideMerge(inner),
    Layer.provideMerge(CreditPaths.creditEnv(memory, ids, store))
  )

type Ctx = Context.Context<CreditLedger.CreditLedger | StateStore.StateStore>

/** The ledger, the remembered key, the round-robin cursor and the lookups made. */
const stateOf = (ctx: Ctx, memory: CreditPaths.Memory) =>
  Effect.gen(function* () {
    const store = Context.get(ctx, StateStore.StateStore)
    const snapshot = yield* Context.get(ctx, CreditLedger.CreditLedger).snapshot
    return {
      snapshot: [...snapshot].sort((x, y) => x.id.localeCompare(y.id)),
      current: yield* store.entries("or-balancer/threshold"),
      cursor: yield* store.entries("or-balancer/round-robin"),
      lookups: yield* Effect.forEach(ids, (id) => memory.lookups(id))
    }
  })

const { server } = CreditPaths
const op = CreditPaths.ops(ids, { cost: 0.15, limits: [0, 0.2, 0.6, 2] })

/** Round robin whose `decide` answers a `Wait` for requests with affinity "wait" (as if it had to wait). */
const hesitant = Layer.effect(
  KeySelector.KeySelector,
  Effect.map(RoundRobin.make(), (rr) =>
    KeySelector.fromDecide((req) =>
      req.affinity === "wait" ? new KeySelector.Wait(Effect.merge(rr.select(req))) : rr.decide(req)
    )
  )
)

describe("Threshold.decide", () => {
  it.effect.prop(
    "random selections, reports, credit changes and time through either path: reservations match the open leases; same picks, same ledger, same current key",
    { ops: fc.array(op, { maxLength: 40, size: "max" }), stay: fc.boolean() },
    ({ ops, stay }) =>
      CreditPaths.run({
        infos,
        stack: (memory) => stack(memory, { stay }),
        stateOf,
        ops,
        // Every key's reservation is exactly the estimate of each of its leases not yet reported.
        invariant: ({ snapshot }, open) => {
          for (const e of snapshot) {
            expect(e.reserved).toBeCloseTo(0.1 * open.filter((l) => l.key.id === e.id).length, 9)
          }
        }
      }),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("stays on its key synchronously; a Wait while a lookup is due or the inner would wait", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory(infos)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(stack(memory.service, {}, hesitant))
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(selector, r)
          const notD = request({ gate: refuse("d") })
          // Nothing looked up yet.
          expect(decideAtOnce(notD)).toBeUndefined()
          expect(yield* stateOf(ctx, memory)).toMatchObject({
            snapshot: [],
            current: [],
            lookups: [0, 0, 0, 0]
          })

          const first = yield* selector.select(notD)
          expect(first.key.id).toBe("a")
          yield* first.report(KeySelector.success("1 millis", 0.3))
          // a keeps 0.7: stay on it, whatever the round robin's cursor says.
          const picks: Array<string> = []
          for (let i = 0; i < 3; i++) {
            const lease = decideAtOnce(notD) as KeySelector.Lease
            picks.push(lease.key.id)
            lease.unsafeReport(KeySelector.success("1 millis", 0.15))
          }
          // 0.7, 0.55, 0.4 before each: a, a, a; then 0.25 is under the threshold: move on.
          expect(picks).toEqual(["a", "a", "a"])
          const moved = decideAtOnce(notD) as KeySelector.Lease
          expect(moved.key.id).not.toBe("a")
          expect(yield* Context.get(ctx, StateStore.StateStore).get("or-balancer/threshold", "default")).toBe(
            moved.key.id
          )
          // A reservation of 0.1 held until reported, once by either form.
          const entryOf = (id: string) =>
            Effect.map(Context.get(ctx, CreditLedger.CreditLedger).snapshot, (s) =>
              s.find((e) => e.id === id)!
            )
          expect((yield* entryOf(moved.key.id)).reserved).toBeCloseTo(0.1)
          yield* moved.report(KeySelector.cancelled())
          moved.unsafeReport(KeySelector.cancelled())
          expect((yield* entryOf(moved.key.id)).reserved).toBe(0)

          // The inner would wait: undecided, nothing reserved or remembered.
          const before = yield* stateOf(ctx, memory)
          expect(decideAtOnce(request({ gate: refuse("d"), affinity: "wait" }))).toBeUndefined()
          // d's failed lookup is due again after 5 s: a request that may take d is undecided.
          yield* TestClock.adjust("5 seconds")
          expect(decideAtOnce(request())).toBeUndefined()
          expect(yield* stateOf(ctx, memory)).toEqual(before)
          // Every key under the threshold: the same typed refusal as `select`, at once.
          const poor = request({ gate: refuse("b", "c", "d") })
          const refused = decideAtOnce(poor)
          expect((refused as KeySelector.NoKeyAvailable).reason).toBe("credit")
          expect(refused).toEqual(yield* Effect.flip(selector.select(poor)))
        })
      )
    })
  )

  it.effect(
    "a Wait when the inner selector is written as an Effect, or the store has no synchronous forms",
    () =>
      Effect.gen(function* () {
        const memory = yield* CreditLookup.makeMemory(infos)
        const plainInner = Layer.effect(
          KeySelector.KeySelector,
          Effect.map(RoundRobin.make(), (rr) => KeySelector.make(rr.select))
        )
        const asyncStore = Layer.effect(
          StateStore.StateStore,
          Effect.map(StateStore.makeMemory, (s) => StateStore.StateStore.of({ ...s, unsafe: undefined }))
        )
        yield* Effect.scoped(
          Effect.gen(function* () {
            const noSyncInner = yield* Layer.build(stack(memory.service, {}, plainInner))
            expect(Context.get(noSyncInner, KeySelector.KeySelector).decide(request())).toBeInstanceOf(
              KeySelector.Wait
            )
            const noSyncStore = yield* Layer.build(stack(memory.service, {}, RoundRobin.layer(), asyncStore))
            const selector = Context.get(noSyncStore, KeySelector.KeySelector)
            expect(selector.decide(request())).toBeInstanceOf(KeySelector.Wait)
            // The Effect path still works there.
            const lease = yield* selector.select(request({ gate: refuse("d") }))
            expect(lease.key.id).toBe("a")
            yield* lease.report(KeySelector.success("1 millis", 0.8))
            expect((yield* selector.select(request({ gate: refuse("d") }))).key.id).toBe("b")
          })
        )
      })
  )

  it.effect("through Balancer.unsafeStart: stays, reserves, and moves on when the key runs low", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({
        a: CreditLookup.keyInfo(1),
        b: CreditLookup.keyInfo(1)
      })
      yield* Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const ledger = yield* CreditLedger.CreditLedger
        const monitor = yield* Monitor.Monitor
        expect(balancer.unsafeStart({})).toBeUndefined() // the keys must be looked up first
        yield* balancer.run({}, () => Effect.void)
        const first = balancer.unsafeStart({})!
        const second = balancer.unsafeStart({})!
        expect([first.key.id, second.key.id]).toEqual(["a", "a"])
        expect((yield* ledger.snapshot).find((e) => e.id === "a")!.reserved).toBeCloseTo(0.2)
        first.unsafeSucceed(0.4)
        second.unsafeSucceed(0.4)
        second.unsafeFail(server) // settled already: nothing
        // a: 1 - 0.1 (the run) - 0.8 = 0.1, under 0.3.
        const third = balancer.unsafeStart({})!
        expect(third.key.id).toBe("b")
        third.unsafeCancel()
        expect(yield* monitor.stats).toMatchObject({ inFlight: 0, successes: 3, failures: 0 })
        const a = (yield* ledger.snapshot).find((e) => e.id === "a")!
        expect(a.reserved).toBe(0)
        expect(a.available).toBeCloseTo(0.1)
      }).pipe(
        Effect.provide(
          Balancer.layer().pipe(
            Layer.provideMerge(Threshold.layer({ threshold: 0.3, estimate: 0.1 })),
            Layer.provideMerge(RoundRobin.layer()),
            Layer.provideMerge(CreditLedger.layer()),
            Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
            Layer.provideMerge(Layer.merge(base(keys("a", "b")), Monitor.layer))
          )
        )
      )
    })
  )

  it.effect("staying on its key writes the current key once, not on every selection", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory(infos)
      // The threshold's writes to the store, by either form.
      const writes: Array<unknown> = []
      const counting = Layer.effect(
        StateStore.StateStore,
        Effect.map(StateStore.makeMemory, (s) => {
          const u = s.unsafe!
          const note = (namespace: string, value: unknown) => {
            if (namespace === "or-balancer/threshold") writes.push(value)
          }
          return StateStore.StateStore.of({
            ...s,
            set: (namespace, id, value) =>
              Effect.zipRight(
                Effect.sync(() => note(namespace, value)),
                s.set(namespace, id, value)
              ),
            unsafe: {
              ...u,
              set: (namespace, id, value) => {
                note(namespace, value)
                return u.set(namespace, id, value)
              }
            }
          })
        })
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(stack(memory.service, {}, RoundRobin.layer(), counting))
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const notD = request({ gate: refuse("d") })
          const picks: Array<string> = []
          // a holds 1: 0.15 a time leaves it 0.25 (under 0.3) after five, then b.
          for (let i = 0; i < 6; i++) {
            const lease =
              i === 0 ? yield* selector.select(notD) : (decideNow(selector, notD) as KeySelector.Lease)
            picks.push(lease.key.id)
            lease.unsafeReport(KeySelector.success("1 millis", 0.15))
          }
          expect(picks).toEqual(["a", "a", "a", "a", "a", "b"])
          expect(writes).toEqual(["a", "b"])
        })
      )
    })
  )

  it.effect("a hedge's lease leaves the key it stays on as it was", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory(infos)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(stack(memory.service))
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const store = Context.get(ctx, StateStore.StateStore)
          const notD = request({ gate: refuse("d") })
          const first = yield* selector.select(notD)
          expect(first.key.id).toBe("a")
          // The hedge of `a`'s request: `a` excluded, another key leased, `a` still the current key.
          const hedge = yield* selector.select(
            request({ gate: refuse("a", "d"), tried: new Set(["a"]), attempt: 2, hedge: true })
          )
          expect(hedge.key.id).not.toBe("a")
          expect(yield* store.get("or-balancer/threshold", "default")).toBe("a")
          yield* hedge.report(KeySelector.success("1 millis", 0.1))
          yield* first.report(KeySelector.cancelled())
          expect((yield* selector.select(notD)).key.id).toBe("a")
          // A failover (no hedge) does move it.
          const failover = yield* selector.select(
            request({ gate: refuse("a", "d"), tried: new Set(["a"]), attempt: 2 })
          )
          expect(yield* store.get("or-balancer/threshold", "default")).toBe(failover.key.id)
        })
      )
    })
  )
})
