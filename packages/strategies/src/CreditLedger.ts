/**
 * The live credit of each key: the last `CreditLookup` answer (cached per key with a TTL, one
 * lookup in flight per key however many selections ask, and only a short TTL after a failed
 * lookup), minus the cost reported since that answer, minus reservations for requests still in
 * flight. Shared by {@link CreditAware} and {@link Threshold}; readable through `snapshot` for a
 * status page.
 *
 * The ledger itself (remaining, spent, reserved) lives in the `StateStore` (namespace
 * `or-balancer/credit`, id `ledger`: one record of every key's entry, so a selection reads it
 * once); the lookup cache is per process.
 *
 * @since 0.1.0
 */
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import type * as StateStore from "@or-balancer/core/StateStore"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as internal from "./internal/creditLedger.js"

/**
 * One key's ledger entry, as stored.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Entry {
  readonly id: string
  /** Credit cap in USD from the last lookup; null = unlimited. */
  readonly limit: number | null
  /** `limit_remaining` from the last lookup; null = unlimited. */
  readonly remaining: number | null
  /** Cost reported since the last lookup. */
  readonly spent: number
  /** Estimates held by requests in flight. */
  readonly reserved: number
  /** When the last successful lookup answered (epoch ms), if ever. */
  readonly lookedUpAt: number | undefined
  /** The last lookup's error tag, if the last lookup failed. */
  readonly error: string | undefined
  /** The key's `limit_reset` from the last lookup. @since 0.4.0 */
  readonly limitReset?: CreditLookup.KeyInfo["limitReset"] | undefined
  /**
   * Refused for its own limit (402, 403 "Key limit exceeded"): out until then (epoch ms), its next
   * `limit_reset`, whatever a lookup in between says (unless it shows the limit raised). @since 0.4.0
   */
  readonly outUntil?: number | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Credit {
  /** USD that may still be spent: remaining − spent − reserved; null = unlimited. */
  readonly available: number | null
  /** When the cached lookup expires, so the balance may change (epoch ms). */
  readonly refreshAt: number
}

/**
 * A reservation held for one attempt; the lease's report settles it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Reservation {
  /**
   * Replaces the estimate by the actual cost (0: nothing was spent) and ends the reservation:
   * at once over a store with synchronous forms, else as the Effect it answers. Idempotent.
   */
  readonly settle: (cost: number) => KeySelector.Reported
}

/**
 * A reservation on the key it was taken on.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Reserved {
  readonly key: Key.Key
  readonly reservation: Reservation
}

export {
  /**
   * Continues a decision with the value of a {@link Step}: at once, or through a `KeySelector.Wait`.
   *
   * @since 0.3.0
   * @category Combinators
   */
  decideWith,
  /**
   * Is the {@link Step} still {@link Pending}? A tag check, cheaper on the selection path than
   * `instanceof`.
   *
   * @since 0.3.0
   * @category Predicates
   */
  isPending,
  /**
   * A value still to be read with an Effect (a credit lookup due, or a store without synchronous
   * forms): what a selection-path operation of {@link Now} answers when it cannot answer at once.
   *
   * @since 0.3.0
   * @category Models
   */
  Pending,
  /**
   * The value of a {@link Step} as an Effect.
   *
   * @since 0.3.0
   * @category Combinators
   */
  stepEffect
} from "./internal/creditLedger.js"
import type { Pending } from "./internal/creditLedger.js"

/**
 * A value now, or {@link Pending}.
 *
 * @since 0.3.0
 * @category Models
 */
export type Step<A> = A | Pending<A>

/**
 * Live balances of a set of keys, read once for one selection (see `Service.balances`).
 *
 * @since 0.1.0
 * @category Models
 */
export interface Balances {
  /** USD available (remaining − spent − reserved); null = unlimited; undefined = never looked up successfully. */
  readonly available: (key: Key.Key) => number | null | undefined
  /**
   * When the key's balance may next change (epoch ms): its cached lookup's expiry, or, for a key
   * out at its own limit or of an account out of credit, when that ends; 0 if unknown.
   */
  readonly refreshAt: (key: Key.Key) => number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** The key's live credit; `undefined` when it was never looked up successfully. */
  readonly credit: (key: Key.Key) => Effect.Effect<Credit | undefined>
  /**
   * The live credit of every key `include` admits, for one selection: stale lookups are
   * refreshed first (through the same single-flight cache as `credit`), then the ledger is read
   * once. Cheaper than `credit` per key. The Effect form of `now.balances`.
   */
  readonly balances: (
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean
  ) => Effect.Effect<Balances>
  /** The Effect form of `now.tryReserveBest`. */
  readonly tryReserveBest: (
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean,
    amount: number,
    until?: number | undefined
  ) => Effect.Effect<Reserved | undefined>
  /** The Effect form of `now.exhaust`. */
  readonly exhaust: (key: Key.Key, error?: UpstreamError.InsufficientCredits) => Effect.Effect<void>
  /** The selection path's operations, answered at once whenever they can: strategies decide on them. */
  readonly now: Now
  /** Drops the cached lookup, so the next `credit` asks again. */
  readonly refresh: (key: Key.Key) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyArray<Entry & { readonly available: number | null }>>
}

/**
 * The ledger's selection path, each operation answered at once over a store with synchronous
 * forms when no lookup is due, else as {@link Pending}.
 *
 * @since 0.3.0
 * @category Models
 */
export interface Now {
  /** See `Service.balances`. */
  readonly balances: (keys: ReadonlyArray<Key.Key>, include: (key: Key.Key) => boolean) => Step<Balances>
  /**
   * Reserves `amount` on the key with the most live credit among those `include` admits and that
   * have at least `amount` available (unlimited beats any balance; ties go to the first in pool
   * order). Stale lookups are refreshed first, as in `balances`; then reading the balances and
   * reserving are one atomic store update, so concurrent selections never both take a key's
   * last credit. `undefined` when no key qualifies. Within a fleet (`CreditShare`), a selection
   * no slice covers waits for the fleet's grant, up to `until` (the request's deadline, epoch ms)
   * while the fleet can still grant.
   */
  readonly tryReserveBest: (
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean,
    amount: number,
    until?: number | undefined
  ) => Step<Reserved | undefined>
  /** Reserves `amount` unconditionally. */
  readonly reserve: (key: Key.Key, amount: number) => Step<Reservation>
  /**
   * The upstream said 402 (or 403 "Key limit exceeded"): the key is empty until the next lookup
   * says otherwise; refused for its own limit (`error.scope` "key") with a known reset, out until
   * that reset; refused for its account's credits ("account"), every key of the account is out
   * until the `accountRecheck`.
   */
  readonly exhaust: (key: Key.Key, error?: UpstreamError.InsufficientCredits) => KeySelector.Reported
}

/**
 * @since 0.1.0
 * @category Context
 */
export class CreditLedger extends Context.Tag("@or-balancer/strategies/CreditLedger")<
  CreditLedger,
  Service
>() {}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** How long a lookup is trusted. Default 60 seconds. */
  readonly ttl?: Duration.DurationInput | undefined
  /** How long a failed lookup is remembered before the next try. Default 5 seconds. */
  readonly failureTtl?: Duration.DurationInput | undefined
  /**
   * The fraction of `ttl` after which a key a selection admits is looked up again in the
   * background while its answer is still trusted, so selections never wait for the lookup (nor
   * leave the synchronous path) when it expires. Default 0.8; 1 turns it off.
   */
  readonly refreshAhead?: number | undefined
  /**
   * How long every key of an account refused for its credits (`openrouter_credits`) stays out
   * before it is tried again (a lookup of one key cannot tell an account's balance). Default 60 seconds.
   */
  readonly accountRecheck?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: (
  options?: Options
) => Effect.Effect<Service, never, CreditLookup.CreditLookup | StateStore.StateStore> = internal.make

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<CreditLedger, never, CreditLookup.CreditLookup | StateStore.StateStore> =>
  Layer.effect(CreditLedger, make(options))
