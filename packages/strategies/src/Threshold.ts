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
import {
  admitsAll,
  afterWrite,
  ns,
  positionOf,
  storeOf,
  thenReport,
  withKeys,
  withKeysFor
} from "./internal/common.js"
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

    const needOf = (request: KeySelector.SelectRequest): number =>
      learned === undefined ? fixed : learned.of(request.model)

    // The lease of a reservation: its report learns the answer's cost and settles it.
    const leaseOf = (
      lease: KeySelector.Lease,
      reservation: CreditLedger.Reservation,
      amount: number,
      model: string | undefined
    ): KeySelector.Lease =>
      KeySelector.lease(lease.key, (outcome) => {
        if (learned !== undefined && outcome._tag === "Success" && outcome.cost !== undefined)
          learned.learn(model, nanos(outcome.cost))
        return thenReport(settle(now, lease.key, reservation, amount, outcome), lease, outcome)
      })
    const reserve = (
      lease: KeySelector.Lease,
      need: number,
      model: string | undefined
    ): KeySelector.Decision => {
      const amount = usd(need)
      const r = now.reserve(lease.key, amount)
      return CreditLedger.isPending(r)
        ? KeySelector.waitFor(r.effect, (reservation) => leaseOf(lease, reservation, amount, model))
        : leaseOf(lease, r, amount, model)
    }

    // A key must hold the threshold and what the request is expected to cost (a key with less
    // would pass OpenRouter's check on arrival and be billed past its cap). The ledger hands back
    // the same balances while its record stands, and the need changes only with what is learned:
    // so is the gate, kept while both stand.
    let lastBalances: CreditLedger.Balances | undefined
    let lastNeed = -1
    let lastGate: KeySelector.Gate | undefined
    const gateOf = (balances: CreditLedger.Balances, need: number): KeySelector.Gate => {
      if (balances !== lastBalances || need !== lastNeed || lastGate === undefined) {
        lastBalances = balances
        lastNeed = need
        lastGate = creditGate(balances, Math.max(threshold, usd(need)))
      }
      return lastGate
    }
    // The keys whose balances matter: every key on a first attempt under no gate (no per-key test).
    const includeOf = (request: KeySelector.SelectRequest): ((k: Key.Key) => boolean) =>
      admitsAll(request) ? all : (k) => KeySelector.isCandidate(request, k)
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

    // The pick reserved; remembered as the current key (`id`) unless it is that one already, the
    // strategy does not stay, or the request is a hedge (which leaves the key it stays on as it
    // was: the current one is slow, not failed).
    const chosen = (
      request: KeySelector.SelectRequest,
      id: string | undefined,
      picked: KeySelector.Lease | KeySelector.NoKeyAvailable,
      need: number
    ): KeySelector.Decision =>
      KeySelector.isNoKeyAvailable(picked)
        ? picked
        : !stay || request.hedge === true || picked.key.id === id
          ? reserve(picked, need, request.model)
          : afterWrite(st.set(ns.threshold, name, picked.key.id), () => reserve(picked, need, request.model))
    // The inner selector's decision, then `chosen`, with no closure unless it waits.
    const thenChosen = (
      request: KeySelector.SelectRequest,
      id: string | undefined,
      decision: KeySelector.Decision,
      need: number
    ): KeySelector.Decision =>
      KeySelector.isWait(decision)
        ? KeySelector.andThen(decision, (p) => chosen(request, id, p, need))
        : chosen(request, id, decision, need)

    // Alone (no fleet), synchronously and with no closure while nothing waits: the balances, the
    // gate, the current key (by its id in the store) while it is still a candidate, the choice.
    const withBalances = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      balances: CreditLedger.Balances
    ): KeySelector.Decision => {
      const need = needOf(request)
      const narrowed = KeySelector.withGate(request, gateOf(balances, need))
      if (!stay) return thenChosen(request, undefined, inner.decide(narrowed), need)
      const u = store.unsafe
      return u !== undefined
        ? stayOn(request, keys, narrowed, need, u.get<string>(ns.threshold, name))
        : KeySelector.waitFor(store.get<string>(ns.threshold, name), (id) =>
            stayOn(request, keys, narrowed, need, id)
          )
    }
    const stayOn = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      narrowed: KeySelector.SelectRequest,
      need: number,
      id: string | undefined
    ): KeySelector.Decision =>
      thenChosen(request, id, inner.decide(keepTo(narrowed, currentOf(keys, id))), need)
    const decideOn = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>
    ): KeySelector.Decision => {
      const balances = now.balances(keys, includeOf(request))
      return CreditLedger.isPending(balances)
        ? KeySelector.waitFor(balances.effect, (b) => withBalances(request, keys, b))
        : withBalances(request, keys, balances)
    }

    // On a fleet: reserves only within this replica's slice. A key short of slice is asked of the
    // fleet first (the selection waits while others' unused credit moves here), then the choice
    // runs again: its current key first, then, if no slice covers any, every short key; only then
    // does it refuse: the fleet's credit is gone.
    const fleetDecide = (
      request: KeySelector.SelectRequest,
      s: CreditShare.Service,
      grown: Grown
    ): KeySelector.Decision =>
      withKeys(pool, (keys) =>
        CreditLedger.decideWith(now.balances(keys, includeOf(request)), (balances) => {
          const need = needOf(request)
          const narrowed = KeySelector.withGate(request, gateOf(balances, need))
          const gated = withinShare(narrowed, balances, need, s)
          const growing = (ids: ReadonlyArray<string>, then: Grown) =>
            KeySelector.waitFor(s.grow(ids, need, request.deadline), () => fleetDecide(request, s, then))
          const pick = (cur: Key.Key | undefined, id: string | undefined) =>
            KeySelector.andThen(inner.decide(stay ? keepTo(gated, cur) : gated), (p) => {
              if (grown === ALL || !KeySelector.isNoKeyAvailable(p)) return chosen(request, id, p, need)
              const short = KeySelector.candidates(narrowed, keys).filter((k) => !s.covers(k.id, need))
              return short.length === 0
                ? p
                : growing(
                    short.map((k) => k.id),
                    ALL
                  )
            })
          if (!stay) return pick(undefined, undefined)
          return st.get<string>(ns.threshold, name, (id) => {
            const cur = currentOf(keys, id)
            // Its key short of slice: more is asked for it before the choice moves to another key.
            return grown === NONE &&
              cur !== undefined &&
              KeySelector.isCandidate(narrowed, cur) &&
              !s.covers(cur.id, need)
              ? growing([cur.id], CURRENT)
              : pick(cur, id)
          })
        })
      )

    return share === undefined
      ? KeySelector.fromDecide((request) => withKeysFor(pool, request, decideOn))
      : KeySelector.fromDecide((request) => fleetDecide(request, share, NONE))
  })

const all = (): boolean => true

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
