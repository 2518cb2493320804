/**
 * Where `HealthAware` shares key health with other replicas. Without it (the default) health is
 * this process's own. A fleet's provider (the Redis layer in `@or-balancer/redis`) writes every
 * ejection and cooldown through (a write only ever extends: a shorter one never ends a longer
 * one), merges the fleet's into each registered consumer in the background, and lets one replica
 * of the fleet at a time test a half-open key.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/**
 * A consumer of the fleet's health (one per `HealthAware`).
 *
 * @since 0.3.0
 * @category Models
 */
export interface Consumer {
  /** The keys to read. */
  readonly keys: () => ReadonlyArray<string>
  /** The fleet has the key out for `remainingMs` more: extend the local state to at least that. */
  readonly merge: (keyId: string, remainingMs: number, reason: string) => void
  /**
   * The fleet has the account out (its credits ran out) for `remainingMs` more: every key of it is
   * out here too, at least that long. Consumers without account state leave it out.
   */
  readonly mergeAccount?: ((account: string, remainingMs: number, reason: string) => void) | undefined
}

/**
 * @since 0.3.0
 * @category Models
 */
export interface Service {
  /** Shares that the key is out for `forMs` from now (in the background; never fails). */
  readonly publish: (keyId: string, forMs: number, reason: string, kind: "cooldown" | "ejected") => void
  /**
   * Shares that an account is out for `forMs` from now (every key of it refused for the account's
   * credits), in the background; only ever extends. Other replicas stop using its keys within
   * one poll.
   */
  readonly publishAccount: (account: string, forMs: number, reason: string) => void
  /** Takes the fleet's one half-open trial of the key; `false` when another replica holds it. */
  readonly tryTrial: (keyId: string) => Effect.Effect<boolean>
  /** How long a trial taken by another replica keeps the key out here before asking again. */
  readonly trialMs: number
  /** Ends this replica's trial; `healthy` also lifts the fleet's ejection (in the background). */
  readonly endTrial: (keyId: string, healthy: boolean) => void
  /** Registers a consumer; the returned function unregisters it. */
  readonly register: (consumer: Consumer) => () => void
}

/**
 * @since 0.3.0
 * @category Context
 */
export class HealthShare extends Context.Tag("@or-balancer/strategies/HealthShare")<HealthShare, Service>() {}
