import { expect } from "@effect/vitest"
import { KeySelector } from "@or-balancer/core"
import { Context, Effect, Either, FastCheck as fc, Layer, TestClock } from "effect"
import { refuse, request, decideNow } from "./util.js"

// The driver of the decision property tests: two identical stacks take the same steps, one
// through `select`/`report` (the derived Effect path), the other through `decide` and the lease's
// plain report, falling back to `select` on a `Wait` as the Balancer does. Behaviour checked on
// every step: a lease is on a key the request admits; `"never"` stacks decide at once (the fast
// path covers them); a `Wait` has taken nothing; and the two paths reach the same answers and state.

/** A pick as the key's id, a refusal as its reason and message: what both paths must agree on. */
export const describeAnswer = (x: KeySelector.Lease | KeySelector.NoKeyAvailable) =>
  x instanceof KeySelector.NoKeyAvailable ? `${x.reason}: ${x.message}` : x.key.id

/** One of the two stacks: its context (with the selector), and the state the two must agree on. */
export interface Side<A> {
  readonly ctx: Context.Context<KeySelector.KeySelector>
  readonly state: Effect.Effect<A>
}

/** The steps `run` takes itself; a test adds its own (a credit change, say) and takes those. */
export type Op =
  | { readonly _tag: "select"; readonly refused: ReadonlyArray<string> }
  | {
      readonly _tag: "report"
      /** Which lease taken so far (modulo their number): some are reported more than once. */
      readonly which: number
      readonly outcome: KeySelector.Outcome
      /** How the fast path's lease is reported: both forms are the same report. */
      readonly effect: boolean
      readonly twice?: boolean
    }
  | { readonly _tag: "tick"; readonly millis: number }

/** A request that refuses a subset of `ids`. */
export const selectOp = (ids: ReadonlyArray<string>) =>
  fc.record({ _tag: fc.constant("select" as const), refused: fc.subarray([...ids]) })

/** A report of a lease taken so far, reported twice too where `twice`. */
export const reportOp = (
  outcome: fc.Arbitrary<KeySelector.Outcome>,
  options: { readonly twice: boolean } = { twice: false }
): fc.Arbitrary<Extract<Op, { _tag: "report" }>> => {
  const once = { _tag: fc.constant("report" as const), which: fc.nat(), outcome, effect: fc.boolean() }
  return options.twice ? fc.record({ ...once, twice: fc.boolean() }) : fc.record(once)
}

/** Time passing, up to `max` milliseconds. */
export const tickOp = (max: number) =>
  fc.record({ _tag: fc.constant("tick" as const), millis: fc.integer({ min: 0, max }) })

export interface Options {
  /**
   * What the fast path may answer `undefined` for: `"never"` (the stack never waits or looks
   * anything up, so every answer is decided), or `"fallback"`: undecided is allowed, must change
   * nothing, and the caller then takes the Effect path, as the balancer does.
   */
  readonly undecided: "never" | "fallback"
}

export interface TwoPaths<A = unknown> {
  /** The synchronous side's state. */
  readonly fastState: Effect.Effect<A>
  /** The same request through both paths: the same pick or refusal; leases kept for `report`. */
  readonly select: (request: KeySelector.SelectRequest) => Effect.Effect<void>
  /**
   * Reports the `which`-th lease (modulo those taken; nothing if none) with the same outcome on
   * both sides, `times` times. A lease `decide` answered at once is reported through `report` when
   * `viaEffect`, else `unsafeReport`; one from the fallback always through `report`.
   */
  readonly report: (
    which: number,
    outcome: KeySelector.Outcome,
    options: { readonly viaEffect: boolean; readonly times?: number }
  ) => Effect.Effect<void>
  /** The two states are equal. */
  readonly compare: Effect.Effect<void>
  /**
   * Takes each step (`other` for a test's own), then compares the states: `select` and `report`
   * as above, with a request refusing `refused`; `tick` through the TestClock.
   */
  readonly run: <T extends { readonly _tag: string }>(
    ops: ReadonlyArray<T>,
    other?: (op: Exclude<T, { readonly _tag: Op["_tag"] }>) => Effect.Effect<void>,
    /** A behaviour to check after every step, given the synchronous side's leases not yet reported. */
    invariant?: (open: ReadonlyArray<KeySelector.Lease>) => Effect.Effect<void>
  ) => Effect.Effect<void>
}

export const make = <A>(slow: Side<A>, fast: Side<A>, options: Options): TwoPaths<A> => {
  const slowSelector = Context.get(slow.ctx, KeySelector.KeySelector)
  const fastSelector = Context.get(fast.ctx, KeySelector.KeySelector)
  const decideAtOnce = (r: KeySelector.SelectRequest) => decideNow(fastSelector, r)
  const slowLeases: Array<KeySelector.Lease> = []
  const fastLeases: Array<KeySelector.Lease> = []
  const reported = new Set<number>()
  // Whether each fast lease came from the synchronous decision (then it is reported synchronously).
  const synchronous: Array<boolean> = []

  const select = (req: KeySelector.SelectRequest) =>
    Effect.gen(function* () {
      const s = yield* Effect.either(slowSelector.select(req))
      const before = options.undecided === "fallback" ? yield* fast.state : undefined
      let f: KeySelector.Lease | KeySelector.NoKeyAvailable | undefined = decideAtOnce(req)
      const decided = f !== undefined
      if (options.undecided === "never") expect(f).toBeDefined()
      if (f === undefined) {
        // Undecided: nothing changed, and the caller takes the Effect path.
        expect(yield* fast.state).toEqual(before)
        f = Either.merge(yield* Effect.either(fastSelector.select(req)))
      }
      expect(describeAnswer(f)).toBe(describeAnswer(Either.merge(s)))
      // Whatever the path, a lease is on a key the request admits: its gate's, not one it tried.
      if (!(f instanceof KeySelector.NoKeyAvailable)) expect(KeySelector.isCandidate(req, f.key)).toBe(true)
      if (Either.isRight(s)) slowLeases.push(s.right)
      if (!(f instanceof KeySelector.NoKeyAvailable)) {
        // A synchronous lease is reported once by its caller's guard (the Balancer's `Started`).
        fastLeases.push(decided ? KeySelector.once(f) : f)
        synchronous.push(decided)
      }
    })

  const report: TwoPaths["report"] = (which, outcome, { times = 1, viaEffect }) =>
    Effect.gen(function* () {
      if (slowLeases.length === 0) return
      const i = which % slowLeases.length
      for (let n = times; n > 0; n--) {
        yield* slowLeases[i]!.report(outcome)
        const l = fastLeases[i]!
        reported.add(i)
        if (viaEffect || !synchronous[i]) yield* l.report(outcome)
        else l.unsafeReport(outcome)
      }
    })

  const compare = Effect.gen(function* () {
    expect(yield* fast.state).toEqual(yield* slow.state)
  })

  const step = (op: Op): Effect.Effect<void> =>
    op._tag === "select"
      ? select(request(op.refused.length > 0 ? { gate: refuse(...op.refused) } : {}))
      : op._tag === "report"
        ? report(op.which, op.outcome, { viaEffect: op.effect, times: op.twice ? 2 : 1 })
        : TestClock.adjust(op.millis)

  const own = new Set(["select", "report", "tick"])
  const open = () => fastLeases.filter((_, i) => !reported.has(i))
  const run: TwoPaths["run"] = (ops, other, invariant) =>
    Effect.forEach(
      ops,
      (op) =>
        Effect.zipRight(
          own.has(op._tag)
            ? step(op as unknown as Op)
            : other!(op as Exclude<typeof op, { _tag: Op["_tag"] }>),
          invariant === undefined
            ? compare
            : Effect.zipRight(
                compare,
                Effect.suspend(() => invariant(open()))
              )
        ),
      { discard: true }
    )

  return { fastState: fast.state, select, report, compare, run }
}

/**
 * Builds the stack twice (two calls of `stack`: nothing shared) and drives the two, comparing
 * `stateOf` each.
 */
export const build = <S, A, E>(
  stack: () => Layer.Layer<KeySelector.KeySelector | S, E>,
  stateOf: (ctx: Context.Context<KeySelector.KeySelector | S>) => Effect.Effect<A>,
  options: Options
) =>
  Effect.gen(function* () {
    const viaEffect = yield* Layer.build(stack())
    const viaSync = yield* Layer.build(stack())
    return make(
      { ctx: viaEffect, state: stateOf(viaEffect) },
      { ctx: viaSync, state: stateOf(viaSync) },
      options
    )
  })

/**
 * The property the decision tests share: `build`, take `ops` on both sides comparing the states
 * after each, and check `invariant` on the synchronous side's state and its leases not yet reported.
 */
export const check = <S, A, E>(
  stack: () => Layer.Layer<KeySelector.KeySelector | S, E>,
  stateOf: (ctx: Context.Context<KeySelector.KeySelector | S>) => Effect.Effect<A>,
  options: Options,
  ops: ReadonlyArray<Op>,
  invariant?: (state: A, open: ReadonlyArray<KeySelector.Lease>) => void
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const paths = yield* build(stack, stateOf, options)
      yield* paths.run(
        ops,
        undefined,
        invariant === undefined
          ? undefined
          : (open) => Effect.map(paths.fastState, (state) => invariant(state, open))
      )
    })
  )

/**
 * `build`, then each request through both paths (its other fields as given, refusing `refused`),
 * comparing the states after each.
 */
export const checkRequests = <S, A, E>(
  stack: () => Layer.Layer<KeySelector.KeySelector | S, E>,
  stateOf: (ctx: Context.Context<KeySelector.KeySelector | S>) => Effect.Effect<A>,
  options: Options,
  requests: ReadonlyArray<Partial<KeySelector.SelectRequest> & { readonly refused: ReadonlyArray<string> }>
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const paths = yield* build(stack, stateOf, options)
      for (const { refused, ...fields } of requests) {
        yield* paths.select(
          request({ ...fields, ...(refused.length > 0 ? { gate: refuse(...refused) } : {}) })
        )
        yield* paths.compare
      }
    })
  )
