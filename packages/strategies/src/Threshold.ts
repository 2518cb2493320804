/**
 * Credit threshold (a decorator): keys whose live credit (from the {@link CreditLedger}) is under
 * `threshold` USD are ineligible with reason `credit` until their cached lookup expires, so a key
 * comes back as soon as a refresh shows credit again (after its `limit_reset`, say). With every
 * key under the threshold, selection fails with `NoKeyAvailable` reason `credit` (and a
 * `retryAfter` at the next refresh), never a silent fall back to the first key.
 *
 * With `stay: true` (the default) it keeps to the key it chose last while that key stays above
 * the threshold, and only then moves on to the next one the inner selector picks. With
 * `stay: false` it is a pure filter, for stacks whose inner strategy spreads load (weighted).
 *
 * Each attempt reserves `estimate` USD on its key (by default what answers for the model have
 * cost, learned) and settles it with the reported cost; a key is eligible only while it holds both
 * the threshold and that estimate. A 402 empties the key in the ledger until its next lookup.
 * Within a fleet (a `CreditShare`, as `@or-balancer/redis` provides) it reserves only within this
 * replica's slice of the key's credit, as credit-aware does, so the fleet never overspends a cap.
 *
 * The decision gates, chooses, remembers and reserves synchronously; it answers a `Wait`,
 * having changed nothing, whenever a key's credit must be looked up first or the inner selector
 * waits.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CreditLedger from "./CreditLedger.js"
import * as CreditShare from "./CreditShare.js"
import { afterWrite, ns, positionOf, storeOf, withKeys } from "./internal/common.js"
import { CostEstimates } from "./internal/costEstimate.js"
import { creditGate, settle } from "./internal/credit.js"
import { nanos, usd } from "./internal/ledgerSlots.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** USD under which a key is left alone. */
  readonly threshold: number
  /** Keep to the current key while it is above the threshold. Default true. */
  readonly stay?: boolean | undefined
  /**
   * USD reserved per request in flight until its cost is reported. Default: learned, per model,
   * from the answers' cost (an EWMA-max: a dearer answer raises it at once, cheaper ones lower it
   * slowly); the threshold is reserved until a first answer names its cost.
   */
  readonly estimate?: number | undefined
  /** The current key's id in the store. Default "default". */
  readonly name?: string | undefined
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options
): Effect.Effect<
  KeySelector.Service,
  never,
  KeySelector.KeySelector | KeyPool.KeyPool | CreditLedger.CreditLedger | StateStore.StateStore
> =>
  Effect.gen(function* () {
    const inner = yield* KeySelector.KeySelector
    const pool = yield* KeyPool.KeyPool
    const ledger = yield* CreditLedger.CreditLedger
    const store = yield* StateStore.StateStore
    const { threshold } = options
    const stay = options.stay ?? true
    const name = options.name ?? "default"

    const st = storeOf(store)
    const now = ledger.now
    // A fleet's slice of each key's credit (absent: this process owns all of it).
    const share = Option.getOrUndefined(yield* Effect.serviceOption(CreditShare.CreditShare))
    // No explicit estimate: learned from the answers' cost, the threshold reserved until then.
    const learned = options.estimate === undefined ? new CostEstimates(nanos(threshold)) : undefined
    const fixed = nanos(options.estimate ?? 0)

    const reserve = (
      lease: KeySelector.Lease,
      need: number,
      model: string | undefined
    ): KeySelector.Decision => {
      const amount = usd(need)
      return CreditLedger.decideWith(now.reserve(lease.key, amount), (reservation) =>
        KeySelector.lease(lease.key, (outcome) => {
          if (learned !== undefined && outcome._tag === "Success" && outcome.cost !== undefined)
            learned.learn(model, nanos(outcome.cost))
          return KeySelector.andReport(settle(now, lease.key, reservation, amount, outcome), () =>
            lease.unsafeReport(outcome)
          )
        })
      )
    }
    const remember = (
      lease: KeySelector.Lease,
      need: number,
      model: string | undefined
    ): KeySelector.Decision =>
      afterWrite(st.set(ns.threshold, name, lease.key.id), () => reserve(lease, need, model))

    // The keys whose balances matter, the credit gate, and the gate keeping to the current key
    // (by its id in the store) while it is still a candidate.
    const includeOf =
      (request: KeySelector.SelectRequest) =>
      (k: Key.Key): boolean =>
        KeySelector.isCandidate(request, k)
    // A key must hold the threshold and what the request is expected to cost (a key with less
    // would pass OpenRouter's check on arrival and be billed past its cap).
    const narrow = (request: KeySelector.SelectRequest, balances: CreditLedger.Balances, need: number) =>
      KeySelector.withGate(request, creditGate(balances, Math.max(threshold, usd(need))))
    // Within a fleet, also this replica's slice of the key's credit.
    const withinShare = (
      request: KeySelector.SelectRequest,
      balances: CreditLedger.Balances,
      need: number,
      s: CreditShare.Service
    ) => KeySelector.withGate(request, (k) => (s.covers(k.id, need) ? undefined : shortOf(balances, k)))
    // Kept to the current key with `only`, not a gate: a gate is asked of every key of the pool
    // by the inner strategy's scan (credit included), `only` lets it take the key at once.
    const currentOf = (keys: ReadonlyArray<Key.Key>, id: string | undefined) => {
      const i = id === undefined ? -1 : positionOf(keys, id)
      return i < 0 ? undefined : keys[i]!
    }
    const keepTo = (narrowed: KeySelector.SelectRequest, cur: Key.Key | undefined) =>
      cur !== undefined && KeySelector.isCandidate(narrowed, cur)
        ? KeySelector.withOnly(narrowed, cur)
        : narrowed

    const chosen = (
      request: KeySelector.SelectRequest,
      picked: KeySelector.Lease | KeySelector.NoKeyAvailable,
      need: number
    ): KeySelector.Decision =>
      KeySelector.isNoKeyAvailable(picked)
        ? picked
        : // A hedge leaves the key it stays on as it was: the current one is slow, not failed.
          !stay || request.hedge === true
          ? reserve(picked, need, request.model)
          : remember(picked, need, request.model)

    const decide = (request: KeySelector.SelectRequest, grown: Grown): KeySelector.Decision =>
      withKeys(pool, (keys) =>
        CreditLedger.decideWith(now.balances(keys, includeOf(request)), (balances) => {
          const need = learned === undefined ? fixed : learned.of(request.model)
          const narrowed = narrow(request, balances, need)
          if (share === undefined) {
            if (!stay) return KeySelector.andThen(inner.decide(narrowed), (p) => chosen(request, p, need))
            return st.get<string>(ns.threshold, name, (id) =>
              KeySelector.andThen(inner.decide(keepTo(narrowed, currentOf(keys, id))), (p) =>
                chosen(request, p, need)
              )
            )
          }
          return fleetDecide(request, keys, balances, narrowed, need, share, grown)
        })
      )

    // On a fleet: reserves only within this replica's slice. A key short of slice is asked of the
    // fleet first (the selection waits while others' unused credit moves here), then the choice
    // runs again: its current key first, then, if no slice covers any, every short key; only then
    // does it refuse: the fleet's credit is gone.
    const fleetDecide = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      balances: CreditLedger.Balances,
      narrowed: KeySelector.SelectRequest,
      need: number,
      s: CreditShare.Service,
      grown: Grown
    ): KeySelector.Decision => {
      const gated = withinShare(narrowed, balances, need, s)
      const growing = (ids: ReadonlyArray<string>, then: Grown) =>
        KeySelector.waitFor(s.grow(ids, need, request.deadline), () => decide(request, then))
      const pick = (cur: Key.Key | undefined) =>
        KeySelector.andThen(inner.decide(stay ? keepTo(gated, cur) : gated), (p) => {
          if (grown === ALL || !KeySelector.isNoKeyAvailable(p)) return chosen(request, p, need)
          const short = KeySelector.candidates(narrowed, keys).filter((k) => !s.covers(k.id, need))
          return short.length === 0
            ? p
            : growing(
                short.map((k) => k.id),
                ALL
              )
        })
      if (!stay) return pick(undefined)
      return st.get<string>(ns.threshold, name, (id) => {
        const cur = currentOf(keys, id)
        // Its key short of slice: more is asked for it before the choice moves to another key.
        return grown === NONE &&
          cur !== undefined &&
          KeySelector.isCandidate(narrowed, cur) &&
          !s.covers(cur.id, need)
          ? growing([cur.id], CURRENT)
          : pick(cur)
      })
    }

    return KeySelector.fromDecide((request) => decide(request, NONE))
  })

/** What a fleet was asked for in this selection: nothing yet, its current key's slice, every short key's. */
type Grown = 0 | 1 | 2
const NONE = 0
const CURRENT = 1
const ALL = 2

/** A key whose slice does not cover the request: short of credit until its balance may change. */
const shortOf = (balances: CreditLedger.Balances, k: Key.Key): KeySelector.Ineligible => ({
  reason: "credit",
  until: balances.refreshAt(k)
})

/**
 * Requires the inner `KeySelector` and a {@link CreditLedger}.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  KeySelector.KeySelector,
  never,
  KeySelector.KeySelector | KeyPool.KeyPool | CreditLedger.CreditLedger | StateStore.StateStore
> => Layer.effect(KeySelector.KeySelector, make(options))
