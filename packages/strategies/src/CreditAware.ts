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
 * The decision chooses and reserves synchronously from the cached balances; it answers a `Wait`,
 * having changed nothing, whenever a key's credit must be looked up first.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as CreditLedger from "./CreditLedger.js"
import { creditGate, settle } from "./internal/credit.js"
import { admitsAll, noKey, withKeysFor } from "./internal/common.js"

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
    const clock = yield* Effect.clock
    const estimate = options.estimate ?? 0.01

    const now = ledger.now

    const leaseOf = (held: CreditLedger.Reserved) =>
      KeySelector.lease(held.key, (outcome) => settle(now, held.key, held.reservation, estimate, outcome))

    // Which keys a selection considers: every key on a first attempt under no gate, no per-key test.
    const includeOf = (request: KeySelector.SelectRequest): Include =>
      admitsAll(request) ? all : (k) => KeySelector.isCandidate(request, k)

    // The request as the credit sees it, to say which key lacks credit and until when.
    const narrowed = (request: KeySelector.SelectRequest, balances: CreditLedger.Balances) =>
      KeySelector.withGate(request, creditGate(balances, estimate))

    // Synchronously, with no closure: the continuations are the layer's, fed the request.
    const decideOn = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>
    ): KeySelector.Decision => {
      const include = includeOf(request)
      const held = now.tryReserveBest(keys, include, estimate, request.deadline)
      if (held instanceof CreditLedger.Pending)
        return KeySelector.waitFor(held.effect, (h) => reserved(request, keys, include, h))
      return reserved(request, keys, include, held)
    }
    const reserved = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      include: Include,
      held: CreditLedger.Reserved | undefined
    ): KeySelector.Decision =>
      held !== undefined
        ? leaseOf(held)
        : // No key has the credit: say which and until when (the rare path, so balances are read again).
          CreditLedger.decideWith(now.balances(keys, include), (balances) =>
            noKey(clock, narrowed(request, balances), keys)
          )

    return KeySelector.fromDecide((request) => withKeysFor(pool, request, decideOn))
  })

type Include = (key: Key.Key) => boolean
const all: Include = () => true

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
