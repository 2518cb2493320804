/**
 * Where the `CreditLedger` gets the part of each key's credit this process may reserve against.
 * Without it (the default) one process owns all of a key's credit, as it always did, and the
 * ledger pays nothing for the check. A fleet of replicas provides its own (the Redis layer in
 * `@or-balancer/redis` leases each replica a slice of the credit), so that reservations summed
 * over the fleet never exceed what the key has left.
 *
 * `covers`, `take` and `settle` are on the selection path, so they are synchronous: a provider
 * answers from the slice it holds and renews it in the background by demand. When no slice
 * covers a request, `grow` asks for more at once (the selection then waits for it, as for a
 * permit). `lookup` wraps the ledger's `GET /key`, so that a provider can let one replica of the
 * fleet at a time look a key up and hand the others its answer.
 *
 * Amounts are integer nano-dollars, as in the ledger.
 *
 * @since 0.3.0
 */
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/**
 * @since 0.3.0
 * @category Models
 */
export interface Service {
  /** Whether this process may reserve `amount` more on the key now. */
  readonly covers: (keyId: string, amount: number) => boolean
  /** A reservation of `amount` was taken on the key (after `covers` said yes). */
  readonly take: (keyId: string, amount: number) => void
  /** A reservation of `amount` ended having spent `cost`. */
  readonly settle: (keyId: string, amount: number, cost: number) => void
  /**
   * No slice covered `amount` on these keys: ask the fleet for more, and wait until answered.
   * `until` is the request's deadline (epoch ms, its key wait): while the fleet may still grant
   * (its ledger being rebuilt, or credit no replica holds) the wait may last until then.
   */
  readonly grow: (
    keyIds: ReadonlyArray<string>,
    amount: number,
    until?: number | undefined
  ) => Effect.Effect<void>
  /** Runs the ledger's lookup of the key, or hands back the fleet's answer to another replica's. */
  readonly lookup: (
    key: Key.Key,
    lookup: Effect.Effect<CreditLookup.KeyInfo, UpstreamError.UpstreamError>
  ) => Effect.Effect<CreditLookup.KeyInfo, UpstreamError.UpstreamError>
}

/**
 * @since 0.3.0
 * @category Context
 */
export class CreditShare extends Context.Tag("@or-balancer/strategies/CreditShare")<CreditShare, Service>() {}
