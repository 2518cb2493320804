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
 * @since 0.1.0
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as CreditLedger from "./CreditLedger.js"
import { creditGate, settleReport } from "./internal/credit.js"
import { ns } from "./internal/common.js"

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

const OTHER: KeySelector.Ineligible = { reason: "ineligible" }

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

    const current = store.get<string>(ns.threshold, name)
    const reserve = (lease: KeySelector.Lease) =>
      Effect.map(ledger.reserve(lease.key, estimate), (reservation) =>
        KeySelector.lease(lease.key, settleReport(ledger, lease.key, reservation, estimate, lease.report))
      )
    const remember = (lease: KeySelector.Lease) =>
      Effect.zipRight(store.set(ns.threshold, name, lease.key.id), reserve(lease))

    return KeySelector.make((request) =>
      Effect.flatMap(pool.get, (keys) =>
        Effect.flatMap(
          ledger.balances(keys, (k) => KeySelector.isCandidate(request, k)),
          (balances) => {
            const narrowed = KeySelector.withGate(request, creditGate(balances, threshold))
            if (!stay) return Effect.flatMap(inner.select(narrowed), reserve)
            return Effect.flatMap(current, (id) => {
              const cur = id === undefined ? undefined : keys.find((k) => k.id === id)
              const gated =
                cur !== undefined && KeySelector.isCandidate(narrowed, cur)
                  ? KeySelector.withGate(narrowed, (k) => (k.id === cur.id ? undefined : OTHER))
                  : narrowed
              return Effect.flatMap(inner.select(gated), remember)
            })
          }
        )
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
