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
import { afterWrite, ns, positionOf, storeOf, withKeys } from "./internal/common.js"

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
          KeySelector.andReport(settle(now, lease.key, reservation, estimate, outcome), () =>
            lease.unsafeReport(outcome)
          )
        )
      )
    const remember = (lease: KeySelector.Lease): KeySelector.Decision =>
      afterWrite(st.set(ns.threshold, name, lease.key.id), () => reserve(lease))

    // The keys whose balances matter, the credit gate, and the gate keeping to the current key
    // (by its id in the store) while it is still a candidate.
    const includeOf =
      (request: KeySelector.SelectRequest) =>
      (k: Key.Key): boolean =>
        KeySelector.isCandidate(request, k)
    const narrow = (request: KeySelector.SelectRequest, balances: CreditLedger.Balances) =>
      KeySelector.withGate(request, creditGate(balances, threshold))
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

    return KeySelector.fromDecide((request) =>
      withKeys(pool, (keys) =>
        CreditLedger.decideWith(now.balances(keys, includeOf(request)), (balances) => {
          const narrowed = narrow(request, balances)
          if (!stay)
            return KeySelector.andThen(inner.decide(narrowed), (picked) =>
              KeySelector.isNoKeyAvailable(picked) ? picked : reserve(picked)
            )
          return st.get<string>(ns.threshold, name, (id) =>
            KeySelector.andThen(inner.decide(keepTo(narrowed, keys, id)), (picked) =>
              // A hedge leaves the key it stays on as it was: the current one is slow, not failed.
              KeySelector.isNoKeyAvailable(picked)
                ? picked
                : request.hedge === true
                  ? reserve(picked)
                  : remember(picked)
            )
          )
        })
      )
    )
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
