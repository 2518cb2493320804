import { describe, expect, it } from "@effect/vitest"
import { Balancer, CreditLookup, KeyPool, KeySelector, Monitor, StateStore } from "@or-balancer/core"
import { CreditAware, CreditLedger } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer, TestClock } from "effect"
import * as CreditPaths from "./creditPaths.js"
import { base, keys, refuse, request, decideNow, isLeaseNow } from "./util.js"

// CreditAware.decide: the same choice and reservation as `select`, synchronously, from
// the ledger's cached balances; a `Wait` (nothing changed) whenever `select` would look up.

const infos = {
  a: CreditLookup.keyInfo(1),
  b: CreditLookup.keyInfo(0.5),
  c: CreditLookup.keyInfo(0.3)
  // d is unknown to the lookup: its lookups fail.
}
const ids = ["a", "b", "c", "d"]

const stack = (
  memory: CreditLookup.Service,
  store: Layer.Layer<StateStore.StateStore> = StateStore.layerMemory
) => CreditAware.layer({ estimate: 0.2 }).pipe(Layer.provideMerge(CreditPaths.creditEnv(memory, ids, store)))

/** What the two stacks must agree on after every step: the ledger and how often each key was looked up. */
const stateOf = (ctx: Context.Context<CreditLedger.CreditLedger>, memory: CreditPaths.Memory) =>
  Effect.gen(function* () {
    const snapshot = yield* Context.get(ctx, CreditLedger.CreditLedger).snapshot
    const lookups = yield* Effect.forEach(ids, (id) => memory.lookups(id))
    return { snapshot: [...snapshot].sort((x, y) => x.id.localeCompare(y.id)), lookups }
  })

const { insufficient } = CreditPaths
const op = CreditPaths.ops(ids, { cost: 0.05, limits: [0, 0.1, 0.6, 2] })

describe("CreditAware.decide", () => {
  it.effect.prop(
    "random selections, reports, credit changes and time through either path: reservations match the open leases; same picks, same ledger, same lookups",
    { ops: fc.array(op, { maxLength: 40, size: "max" }) },
    ({ ops }) =>
      CreditPaths.run({
        infos,
        stack: (memory) => stack(memory),
        stateOf,
        ops,
        // Every key's reservation is exactly the estimate of each of its leases not yet reported.
        invariant: ({ snapshot }, open) => {
          for (const id of ids) {
            const reserved = snapshot.find((e) => e.id === id)?.reserved ?? 0
            expect(reserved).toBeCloseTo(0.2 * open.filter((l) => l.key.id === id).length, 9)
          }
        }
      }),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("a Wait while a lookup is due (never looked up, expired, refreshed); decided otherwise", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory(infos)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(stack(memory.service))
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const ledger = Context.get(ctx, CreditLedger.CreditLedger)
          const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(selector, r)
          // Nothing looked up yet.
          expect(decideAtOnce(request())).toBeUndefined()
          expect(yield* stateOf(ctx, memory)).toEqual({ snapshot: [], lookups: [0, 0, 0, 0] })

          const first = yield* selector.select(request())
          expect(first.key.id).toBe("a")
          // Everything fresh: decided synchronously, reserving as `select` does (0.2 of a's 1.00).
          const second = decideAtOnce(request()) as KeySelector.Lease
          expect(second.key.id).toBe("a")
          const entryOf = (id: string) => Effect.map(ledger.snapshot, (s) => s.find((e) => e.id === id)!)
          expect((yield* entryOf("a")).reserved).toBeCloseTo(0.4)
          // Reported twice, by either form: given back once, the cost replacing the estimate.
          second.unsafeReport(KeySelector.success("1 millis", 0.05))
          yield* second.report(KeySelector.success("1 millis", 0.05))
          yield* first.report(KeySelector.cancelled())
          expect(yield* entryOf("a")).toMatchObject({ reserved: 0, spent: 0.05 })

          // A refused key that is due a lookup does not count; d's lookup failed 5 s ago.
          yield* TestClock.adjust("5 seconds")
          const skipD = decideAtOnce(request({ gate: refuse("d") })) as KeySelector.Lease
          expect(skipD.key.id).toBe("a")
          skipD.unsafeReport(KeySelector.cancelled())
          const before = yield* stateOf(ctx, memory)
          expect(decideAtOnce(request())).toBeUndefined()
          expect(yield* stateOf(ctx, memory)).toEqual(before)

          // Expired: due again.
          yield* TestClock.adjust("60 seconds")
          expect(decideAtOnce(request({ gate: refuse("d") }))).toBeUndefined()
          const third = yield* selector.select(request({ gate: refuse("d") }))
          yield* third.report(KeySelector.cancelled())
          expect(yield* memory.lookups("a")).toBe(2)
          const fourth = decideAtOnce(request({ gate: refuse("d") }))
          expect(isLeaseNow(fourth)).toBe(true)
          ;(fourth as KeySelector.Lease).unsafeReport(KeySelector.cancelled())

          // Refreshed by hand: due until looked up.
          const a = (yield* Context.get(ctx, KeyPool.KeyPool).get).find((k) => k.id === "a")!
          yield* ledger.refresh(a)
          expect(decideAtOnce(request({ gate: refuse("d") }))).toBeUndefined()
        })
      )
    })
  )

  it.effect("no key with the credit: the same NoKeyAvailable as select, at once", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({
        a: CreditLookup.keyInfo(0.3),
        b: CreditLookup.keyInfo(0.1)
      })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(stack(memory.service))
          const selector = Context.get(ctx, KeySelector.KeySelector)
          const onlyAB = request({ gate: refuse("c", "d") })
          const lease = yield* selector.select(onlyAB) // 0.1 left on a, under the estimate
          yield* TestClock.adjust("10 seconds")
          const refused = decideNow(selector, onlyAB)
          expect(refused).toBeInstanceOf(KeySelector.NoKeyAvailable)
          expect((refused as KeySelector.NoKeyAvailable).reason).toBe("credit")
          expect(refused).toEqual(yield* Effect.flip(selector.select(onlyAB)))
          // A 402 empties a until its next lookup.
          yield* lease.report(KeySelector.failure("1 millis", insufficient))
          const entries = yield* Context.get(ctx, CreditLedger.CreditLedger).snapshot
          expect(entries.find((e) => e.id === "a")).toMatchObject({ available: 0, reserved: 0 })
        })
      )
    })
  )

  it.effect("a Wait over a store without synchronous forms; the Effect path still reserves there", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory(infos)
      const asyncStore = Layer.effect(
        StateStore.StateStore,
        Effect.map(StateStore.makeMemory, (s) => StateStore.StateStore.of({ ...s, unsafe: undefined }))
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const ctx = yield* Layer.build(stack(memory.service, asyncStore))
          const selector = Context.get(ctx, KeySelector.KeySelector)
          expect(selector.decide(request())).toBeInstanceOf(KeySelector.Wait)
          const ledger = Context.get(ctx, CreditLedger.CreditLedger)
          expect(ledger.now.balances([], () => true)).toBeInstanceOf(CreditLedger.Pending)
          const lease = yield* selector.select(request())
          expect(lease.key.id).toBe("a")
          const [entry] = yield* Context.get(ctx, CreditLedger.CreditLedger).snapshot.pipe(
            Effect.map((s) => s.filter((e) => e.id === "a"))
          )
          expect(entry!.reserved).toBeCloseTo(0.2)
        })
      )
    })
  )

  it.effect("through Balancer.unsafeStart: leases with a reservation, settled by unsafeSucceed", () =>
    Effect.gen(function* () {
      const memory = yield* CreditLookup.makeMemory({
        a: CreditLookup.keyInfo(1),
        b: CreditLookup.keyInfo(2)
      })
      yield* Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const ledger = yield* CreditLedger.CreditLedger
        const monitor = yield* Monitor.Monitor
        // The first request must look the keys up: not for the fast path.
        expect(balancer.unsafeStart({})).toBeUndefined()
        yield* balancer.run({}, () => Effect.void)
        const started = balancer.unsafeStart({})!
        expect(started.key.id).toBe("b")
        const entryOf = (id: string) => Effect.map(ledger.snapshot, (s) => s.find((e) => e.id === id)!)
        expect((yield* entryOf("b")).reserved).toBeCloseTo(0.2)
        expect((yield* monitor.stats).inFlight).toBe(1)
        started.unsafeSucceed(0.5)
        started.unsafeCancel()
        expect((yield* entryOf("b")).reserved).toBe(0)
        expect((yield* entryOf("b")).spent).toBeCloseTo(0.7)
        // b has 2 - 0.2 (the run's success, no cost: the estimate) - 0.5 = 1.3 left, a 1.00.
        const next = balancer.unsafeStart({})!
        expect(next.key.id).toBe("b")
        next.unsafeFail(insufficient) // b is empty now: the next one takes a
        expect((yield* entryOf("b")).available).toBe(0)
        const last = balancer.unsafeStart({})!
        expect(last.key.id).toBe("a")
        last.unsafeCancel()
        expect(yield* monitor.stats).toMatchObject({ inFlight: 0, successes: 2, failures: 1 })
      }).pipe(
        Effect.provide(
          Balancer.layer().pipe(
            Layer.provideMerge(CreditAware.layer({ estimate: 0.2 })),
            Layer.provideMerge(CreditLedger.layer()),
            Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service)),
            Layer.provideMerge(Layer.merge(base(keys("a", "b")), Monitor.layer))
          )
        )
      )
    })
  )
})
