/**
 * Credit-aware (a base strategy): among the candidates, the key with the most live credit wins
 * (`limit: null` counts as unlimited and beats any balance). Live credit comes from the
 * {@link CreditLedger}: the cached `CreditLookup` answer minus reported costs and minus a
 * reservation of `estimate` USD for each request in flight. The reservation is taken atomically
 * ("at least `estimate` left, then hold it"), so concurrent requests cannot overshoot a small cap:
 * with a cap of 1.00 and an estimate of 0.10, at most 10 requests run on that key at once, and
 * a reported cost replaces the estimate when the answer arrives.
 *
 * A key without enough credit is ineligible with reason `credit` until its cached lookup
 * expires; a key never looked up successfully is ineligible until the failed lookup may be
 * retried (a short TTL).
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as CreditLedger from "./CreditLedger.js"
import { creditGate, settleReport } from "./internal/credit.js"
import { noKey } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** USD reserved for each request in flight until its cost is reported. Default 0.01. */
  readonly estimate?: number | undefined
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<KeySelector.Service, never, KeyPool.KeyPool | CreditLedger.CreditLedger> =>
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const ledger = yield* CreditLedger.CreditLedger
    const estimate = options.estimate ?? 0.01

    const NOOP = () => Effect.void
    const leaseOf = (key: Key.Key, r: CreditLedger.Reservation) =>
      KeySelector.lease(key, settleReport(ledger, key, r, estimate, NOOP))

    // After losing the race for the best key's last credit: the others, best first.
    const attempt = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      ranked: ReadonlyArray<Key.Key>,
      i: number
    ): Effect.Effect<KeySelector.Lease, KeySelector.NoKeyAvailable> => {
      if (i >= ranked.length) return noKey(request, keys)
      const key = ranked[i]!
      return Effect.flatMap(ledger.tryReserve(key, estimate), (r) =>
        r === undefined ? attempt(request, keys, ranked, i + 1) : Effect.succeed(leaseOf(key, r))
      )
    }

    return KeySelector.make((request) =>
      Effect.flatMap(pool.get, (keys) =>
        Effect.flatMap(
          ledger.balances(keys, (k) => KeySelector.isCandidate(request, k)),
          (balances) => {
            // The best key in one pass; ties go to the first in pool order.
            let best: Key.Key | undefined
            let bestValue = -Infinity
            for (const k of keys) {
              if (!KeySelector.isCandidate(request, k)) continue
              const a = balances.available(k)
              if (a === undefined || (a !== null && a < estimate)) continue
              const v = a ?? Infinity
              if (v > bestValue) {
                best = k
                bestValue = v
              }
            }
            const narrowed = () => KeySelector.withGate(request, creditGate(balances, estimate))
            if (best === undefined) return noKey(narrowed(), keys)
            const first = best
            return Effect.flatMap(ledger.tryReserve(first, estimate), (r) => {
              if (r !== undefined) return Effect.succeed(leaseOf(first, r))
              const gated = narrowed()
              const value = (k: Key.Key) => balances.available(k) ?? Infinity
              const ranked = KeySelector.candidates(gated, keys)
                .filter((k) => k !== first)
                .sort((x, y) => value(y) - value(x))
              return attempt(gated, keys, ranked, 0)
            })
          }
        )
      )
    )
  })

/**
 * Needs a {@link CreditLedger} (`CreditLedger.layer()`), which needs a `CreditLookup`.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | CreditLedger.CreditLedger> =>
  Layer.effect(KeySelector.KeySelector, make(options))
