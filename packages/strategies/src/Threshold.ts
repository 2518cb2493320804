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
 * Each attempt reserves `estimate` USD on its key and settles it with the reported cost; a 402
 * empties the key in the ledger until its next lookup.
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
import * as CreditLedger from "./CreditLedger.js"
import { creditGate, settle } from "./internal/credit.js"
import {
  admitsAll,
  afterWrite,
  ns,
  positionOf,
  storeOf,
  thenFor,
  thenReport,
  withKeysFor
} from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** USD under which a key is left alone. */
  readonly threshold: number
  /** Keep to the current key while it is above the threshold. Default true. */
  readonly stay?: boolean | undefined
  /** USD reserved per request in flight until its cost is reported. Default 0. */
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
    const estimate = options.estimate ?? 0
    const name = options.name ?? "default"

    const st = storeOf(store)
    const now = ledger.now
    const reserve = (lease: KeySelector.Lease): KeySelector.Decision =>
      CreditLedger.decideWith(now.reserve(lease.key, estimate), (reservation) =>
        KeySelector.lease(lease.key, (outcome) =>
          thenReport(settle(now, lease.key, reservation, estimate, outcome), lease, outcome)
        )
      )
    const reserveOrRefusal = (_: unknown, picked: KeySelector.Lease | KeySelector.NoKeyAvailable) =>
      KeySelector.isNoKeyAvailable(picked) ? picked : reserve(picked)

    // The credit gate of one selection's balances: the ledger hands back the same balances while
    // its record stands, so is the gate.
    let lastBalances: CreditLedger.Balances | undefined
    let lastGate: KeySelector.Gate | undefined
    const gateOf = (balances: CreditLedger.Balances): KeySelector.Gate => {
      if (balances !== lastBalances || lastGate === undefined) {
        lastBalances = balances
        lastGate = creditGate(balances, threshold)
      }
      return lastGate
    }

    // Kept to the current key with `only`, not a gate: a gate is asked of every key of the pool
    // by the inner strategy's scan (credit included), `only` lets it take the key at once.
    const keepTo = (
      narrowed: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      id: string | undefined
    ) => {
      const i = id === undefined ? -1 : positionOf(keys, id)
      const cur = i < 0 ? undefined : keys[i]!
      return cur !== undefined && KeySelector.isCandidate(narrowed, cur)
        ? KeySelector.withOnly(narrowed, cur)
        : narrowed
    }

    // The current key (by its id in the store) while it is still a candidate, else the inner
    // selector's next; remembered unless it is the current one already or the request is a hedge
    // (which leaves the key it stays on as it was: the current one is slow, not failed).
    const stayOn = (
      request: KeySelector.SelectRequest,
      narrowed: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      id: string | undefined
    ): KeySelector.Decision => {
      const picked = inner.decide(keepTo(narrowed, keys, id))
      return KeySelector.isWait(picked)
        ? KeySelector.andThen(picked, (p) => chosen(request, id, p))
        : chosen(request, id, picked)
    }
    const chosen = (
      request: KeySelector.SelectRequest,
      id: string | undefined,
      picked: KeySelector.Lease | KeySelector.NoKeyAvailable
    ): KeySelector.Decision =>
      KeySelector.isNoKeyAvailable(picked)
        ? picked
        : request.hedge === true || picked.key.id === id
          ? reserve(picked)
          : afterWrite(st.set(ns.threshold, name, picked.key.id), () => reserve(picked))

    const withBalances = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      balances: CreditLedger.Balances
    ): KeySelector.Decision => {
      const narrowed = KeySelector.withGate(request, gateOf(balances))
      if (!stay) return thenFor(inner.decide(narrowed), undefined, reserveOrRefusal)
      const u = store.unsafe
      return u !== undefined
        ? stayOn(request, narrowed, keys, u.get<string>(ns.threshold, name))
        : KeySelector.waitFor(store.get<string>(ns.threshold, name), (id) =>
            stayOn(request, narrowed, keys, id)
          )
    }

    // Synchronously, with no closure while nothing waits: the balances of the keys that matter
    // (every key on a first attempt under no gate, no per-key test), then the choice.
    const decideOn = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>
    ): KeySelector.Decision => {
      const balances = now.balances(
        keys,
        admitsAll(request) ? all : (k) => KeySelector.isCandidate(request, k)
      )
      return CreditLedger.isPending(balances)
        ? KeySelector.waitFor(balances.effect, (b) => withBalances(request, keys, b))
        : withBalances(request, keys, balances)
    }

    return KeySelector.fromDecide((request) => withKeysFor(pool, request, decideOn))
  })

const all = (): boolean => true

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
