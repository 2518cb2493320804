import { CreditLookup, KeyPool, KeySelector, StateStore, UpstreamError } from "@or-balancer/core"
import { CreditLedger } from "@or-balancer/strategies"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import * as TwoPaths from "./twoPaths.js"
import { keys } from "./util.js"

// What the credit strategies' decision tests share (CreditAware.decide, Threshold.decide): the
// ledger over an in-memory lookup, the outcomes and credit changes thrown at it, and the two
// paths run over their own lookups, changed alike.

export type Memory = Effect.Effect.Success<ReturnType<typeof CreditLookup.makeMemory>>

/** The ledger over `memory`, the pool of `ids` and `store`, kept in the output. */
export const creditEnv = (
  memory: CreditLookup.Service,
  ids: ReadonlyArray<string>,
  store: Layer.Layer<StateStore.StateStore> = StateStore.layerMemory
) =>
  // No refresh ahead: these compare the two paths at each step, and a background lookup would
  // land at a different step on each (refresh ahead has its own tests, CreditLedger.test.ts).
  CreditLedger.layer({ ttl: "60 seconds", failureTtl: "5 seconds", refreshAhead: 1 }).pipe(
    Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory)),
    Layer.provideMerge(Layer.merge(KeyPool.layer(keys(...ids)).pipe(Layer.orDie), store))
  )

export const insufficient = new UpstreamError.InsufficientCredits({ message: "402" })
export const server = new UpstreamError.ServerError({ message: "502", status: 502 })

/** 0: a success costing `cost`; 1: a success with no cost (the estimate counts); 2: a 402; 3: a 502; 4: cancelled. */
const outcomeOf =
  (cost: number) =>
  (kind: number): KeySelector.Outcome =>
    kind === 0
      ? KeySelector.success("1 millis", cost)
      : kind === 1
        ? KeySelector.success("1 millis")
        : kind === 2
          ? KeySelector.failure("1 millis", insufficient)
          : kind === 3
            ? KeySelector.failure("1 millis", server)
            : KeySelector.cancelled()

/** Selections, reports (some twice), a key's credit limit changing to one of `limits`, and time. */
export const ops = (
  ids: ReadonlyArray<string>,
  options: { readonly cost: number; readonly limits: ReadonlyArray<number> }
) =>
  fc.oneof(
    { arbitrary: TwoPaths.selectOp(ids), weight: 4 },
    {
      arbitrary: TwoPaths.reportOp(fc.integer({ min: 0, max: 4 }).map(outcomeOf(options.cost)), {
        twice: true
      }),
      weight: 3
    },
    {
      arbitrary: fc.record({
        _tag: fc.constant("credit" as const),
        id: fc.constantFrom(...ids),
        limit: fc.option(fc.constantFrom(...options.limits), { nil: null })
      }),
      weight: 1
    },
    { arbitrary: TwoPaths.tickOp(40_000), weight: 1 }
  )

type Op = ReturnType<typeof ops> extends fc.Arbitrary<infer T> ? T : never

/**
 * Two stacks, each over its own lookup of `infos`, through the two paths: `ops` taken on both (a
 * credit change set on both lookups), the states compared after every step, then `invariant`
 * checked on the synchronous side's state and its leases not yet reported.
 */
export const run = <S, A>(options: {
  readonly infos: Record<string, CreditLookup.KeyInfo>
  readonly stack: (memory: CreditLookup.Service) => Layer.Layer<KeySelector.KeySelector | S>
  readonly stateOf: (ctx: Context.Context<KeySelector.KeySelector | S>, memory: Memory) => Effect.Effect<A>
  readonly ops: ReadonlyArray<Op>
  readonly invariant: (state: A, open: ReadonlyArray<KeySelector.Lease>) => void
}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const slowMemory = yield* CreditLookup.makeMemory(options.infos)
      const fastMemory = yield* CreditLookup.makeMemory(options.infos)
      const viaEffect = yield* Layer.build(options.stack(slowMemory.service))
      const viaSync = yield* Layer.build(options.stack(fastMemory.service))
      const paths = TwoPaths.make(
        { ctx: viaEffect, state: options.stateOf(viaEffect, slowMemory) },
        { ctx: viaSync, state: options.stateOf(viaSync, fastMemory) },
        { undecided: "fallback" }
      )
      yield* paths.run(
        options.ops,
        (o) =>
          Effect.gen(function* () {
            const info = CreditLookup.keyInfo(o.limit)
            yield* slowMemory.set(o.id, info)
            yield* fastMemory.set(o.id, info)
          }),
        (open) => Effect.map(paths.fastState, (state) => options.invariant(state, open))
      )
    })
  )
