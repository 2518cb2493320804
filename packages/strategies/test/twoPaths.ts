import { expect } from "@effect/vitest"
import { KeySelector } from "@or-balancer/core"
import { Effect, Either } from "effect"

// The driver of the two-path property tests: two identical stacks take the same steps, one
// through `select`/`report`, the other through `unsafeSelect`/`unsafeReport`, and must agree on
// every answer and, after every step, on their state.

/** A pick as the key's id, a refusal as its reason and message: what both paths must agree on. */
export const describeAnswer = (x: KeySelector.Lease | KeySelector.NoKeyAvailable) =>
  x instanceof KeySelector.NoKeyAvailable ? `${x.reason}: ${x.message}` : x.key.id

/** One of the two stacks: its selector, and the state the two must agree on. */
export interface Side<A> {
  readonly selector: KeySelector.Service
  readonly state: Effect.Effect<A>
}

export interface Options {
  /**
   * What the fast path may answer `undefined` for: `"never"` (the stack never waits or looks
   * anything up, so every answer is decided), or `"fallback"`: undecided is allowed, must change
   * nothing, and the caller then takes the Effect path, as the balancer does.
   */
  readonly undecided: "never" | "fallback"
}

export interface TwoPaths {
  /** The same request through both paths: the same pick or refusal; leases kept for `report`. */
  readonly select: (request: KeySelector.SelectRequest) => Effect.Effect<void>
  /**
   * Reports the `which`-th lease (modulo those taken; nothing if none) with the same outcome on
   * both sides, `times` times. A lease of `unsafeSelect` is reported through `report` when
   * `viaEffect`, else `unsafeReport`; one from the fallback always through `report`.
   */
  readonly report: (
    which: number,
    outcome: KeySelector.Outcome,
    options: { readonly viaEffect: boolean; readonly times?: number }
  ) => Effect.Effect<void>
  /** The two states are equal. */
  readonly compare: Effect.Effect<void>
}

export const make = <A>(slow: Side<A>, fast: Side<A>, options: Options): TwoPaths => {
  const unsafeSelect = fast.selector.unsafeSelect!
  expect(unsafeSelect).toBeDefined()
  const slowLeases: Array<KeySelector.Lease> = []
  const fastLeases: Array<KeySelector.Lease | KeySelector.UnsafeLease> = []
  // Whether each fast lease came from `unsafeSelect` (it can be reported synchronously).
  const synchronous: Array<boolean> = []

  const select = (req: KeySelector.SelectRequest) =>
    Effect.gen(function* () {
      const s = yield* Effect.either(slow.selector.select(req))
      const before = options.undecided === "fallback" ? yield* fast.state : undefined
      let f: KeySelector.Lease | KeySelector.NoKeyAvailable | undefined = unsafeSelect(req)
      const decided = f !== undefined
      if (options.undecided === "never") expect(f).toBeDefined()
      if (f === undefined) {
        // Undecided: nothing changed, and the caller takes the Effect path.
        expect(yield* fast.state).toEqual(before)
        f = Either.merge(yield* Effect.either(fast.selector.select(req)))
      }
      expect(describeAnswer(f)).toBe(describeAnswer(Either.merge(s)))
      if (Either.isRight(s)) slowLeases.push(s.right)
      if (!(f instanceof KeySelector.NoKeyAvailable)) {
        fastLeases.push(f)
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
        if (viaEffect || !synchronous[i]) yield* l.report(outcome)
        else (l as KeySelector.UnsafeLease).unsafeReport(outcome)
      }
    })

  const compare = Effect.gen(function* () {
    expect(yield* fast.state).toEqual(yield* slow.state)
  })

  return { select, report, compare }
}
