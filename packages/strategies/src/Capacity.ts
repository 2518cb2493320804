/**
 * Where `ConcurrencyLimited` gets each key's cap from. The default is the key's full cap, at no
 * cost: one process owns all of it. A fleet of replicas provides its own (the Redis layer in
 * `@or-balancer/redis` hands each replica a leased slice), so that the caps hold summed over the
 * fleet.
 *
 * `permits` is on the hot path, so it is synchronous: a provider answers from what it holds and
 * renews in the background, using the usage its consumers register (what is in use and waiting
 * per key, their demand). When a slice grows, it calls the consumer's `grown` so that waiters
 * get the new permits at once.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

/**
 * One key's usage in this process, as its consumer sees it.
 *
 * @since 0.3.0
 * @category Models
 */
export interface Usage {
  readonly keyId: string
  /** The key's whole cap, summed over the fleet. */
  readonly cap: number
  readonly inUse: number
  readonly waiting: number
}

/**
 * A consumer of capacity (one per `ConcurrencyLimited`).
 *
 * @since 0.3.0
 * @category Models
 */
export interface Consumer {
  /** Every key's usage now. */
  readonly usage: () => ReadonlyArray<Usage>
  /** The key's capacity grew: hand the new permits to waiters. */
  readonly grown: (keyId: string) => void
}

/**
 * @since 0.3.0
 * @category Models
 */
export interface Service {
  /**
   * Permits this process may have in use on the key now, out of its whole `cap`. `inUse` (what
   * this process has in use on it) lets a provider renew ahead, before the slice runs out.
   */
  readonly permits: (keyId: string, cap: number, inUse?: number) => number
  /** Registers a consumer; the returned function unregisters it. */
  readonly register: (consumer: Consumer) => () => void
}

/**
 * @since 0.3.0
 * @category Context
 */
export class Capacity extends Context.Tag("@or-balancer/strategies/Capacity")<Capacity, Service>() {}

/**
 * One process owns every key's whole cap.
 *
 * @since 0.3.0
 * @category Constructors
 */
export const local: Service = {
  permits: (_keyId, cap) => cap,
  register: () => () => {}
}

/**
 * @since 0.3.0
 * @category Layers
 */
export const layerLocal: Layer.Layer<Capacity> = Layer.succeed(Capacity, local)
