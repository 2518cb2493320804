// A selection request as decorators narrow it and strategies read it (see `KeySelector.ts`):
// gates, keeping to one key, the candidates, and why there are none.
import * as Duration from "effect/Duration"
import type * as Key from "../Key.js"
import { NoKeyAvailable } from "./decision.js"

/**
 * Why a key cannot take this request now.
 *
 * @since 0.1.0
 * @category Models
 */
export type Reason =
  | "empty" // the pool has no keys
  | "tried" // every eligible key already failed this request
  | "cooldown" // rate limited or ejected for a while
  | "unhealthy" // ejected by health tracking
  | "revoked" // refused by OpenRouter with a 401 (invalid or revoked): closed by the Balancer
  | "credit" // out of credit, or under the threshold
  | "concurrency" // every permit is taken
  | "model" // no key serves this model
  | "ineligible" // filtered out by a custom gate

/**
 * @since 0.1.0
 * @category Models
 */
export interface Ineligible {
  readonly reason: Reason
  /** Epoch millis (from `Clock`) when the key may be eligible again, if known. */
  readonly until?: number | undefined
}

/**
 * A gate tells, for a key, whether it may take the request: `undefined` means yes.
 *
 * @since 0.1.0
 * @category Models
 */
export type Gate = (key: Key.Key) => Ineligible | undefined

/**
 * What the request is, as selection sees it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface SelectRequest {
  readonly model?: string | undefined
  /** 1 for the first attempt of a request, then 2, 3, ... */
  readonly attempt: number
  /** Ids of the keys that already failed this request: never chosen again while another is eligible. */
  readonly tried: ReadonlySet<string>
  /** Affinity id (`session_id`, `prompt_cache_key`, ...) for sticky routing. */
  readonly affinity?: string | undefined
  /** Narrowed by each decorator; strategies only choose among keys it admits. */
  readonly gate?: Gate | undefined
  /** Epoch millis until which the caller will wait; a selector that blocks (for a permit) stops then. */
  readonly deadline?: number | undefined
  /**
   * The one key the request may go to (every other key is `ineligible`), set by a decorator that
   * keeps to a key (`KeySelector.withOnly`): a strategy leases it without scanning the pool.
   */
  readonly only?: Key.Key | undefined
  /**
   * An extra attempt beside one still under way (a hedge against a stall): not a failover, so a
   * strategy keeps its preference (the key it stays on) as it was.
   *
   * @since 0.3.0
   */
  readonly hedge?: boolean | undefined
}

export const withGate = (request: SelectRequest, gate: Gate): SelectRequest => {
  const outer = request.gate
  // Spelled out rather than spread: every request then has one shape, and a spread of it cost
  // a tenth of a composed stack's selection.
  return {
    model: request.model,
    attempt: request.attempt,
    tried: request.tried,
    affinity: request.affinity,
    gate: outer === undefined ? gate : (key) => outer(key) ?? gate(key),
    deadline: request.deadline,
    only: request.only,
    hedge: request.hedge
  }
}

const NOT_ONLY: Ineligible = { reason: "ineligible" }

export const withOnly = (request: SelectRequest, key: Key.Key): SelectRequest => {
  const outer = request.gate
  return {
    model: request.model,
    attempt: request.attempt,
    tried: request.tried,
    affinity: request.affinity,
    // Narrowed too, as `withGate` would (the outer gate's reason first): a user's strategy that
    // reads `gate` rather than `only` still keeps to the key. Built-in ones read `only` and never
    // ask the gate about the other keys (`isCandidate` turns them away first).
    gate:
      outer === undefined
        ? (k) => (k.id === key.id ? undefined : NOT_ONLY)
        : (k) => outer(k) ?? (k.id === key.id ? undefined : NOT_ONLY),
    deadline: request.deadline,
    only: key,
    hedge: request.hedge
  }
}

export const isCandidate = (request: SelectRequest, key: Key.Key): boolean =>
  (request.only === undefined || request.only.id === key.id) &&
  !request.tried.has(key.id) &&
  (request.gate === undefined || request.gate(key) === undefined)

export const candidates = (request: SelectRequest, keys: ReadonlyArray<Key.Key>): ReadonlyArray<Key.Key> => {
  const out: Array<Key.Key> = []
  for (const k of keys) if (isCandidate(request, k)) out.push(k)
  return out
}

const reasonText: Record<Reason, string> = {
  empty: "the key pool is empty",
  tried: "every eligible key already failed this request",
  cooldown: "every key is cooling down",
  unhealthy: "every key is ejected as unhealthy",
  revoked: "every key was refused by OpenRouter (invalid or revoked)",
  credit: "every key is out of credit or under its threshold",
  concurrency: "every key is at its concurrency limit",
  model: "no key serves this model",
  ineligible: "no key is eligible"
}

export const explain = (
  request: SelectRequest,
  keys: ReadonlyArray<Key.Key>,
  now: number
): NoKeyAvailable => {
  if (keys.length === 0) return new NoKeyAvailable({ reason: "empty", message: reasonText.empty })
  let reason: Reason | undefined
  let earliest: number | undefined
  let anyUntried = false
  for (const k of keys) {
    if (request.tried.has(k.id)) continue
    anyUntried = true
    // Kept to one key (`only`): any other is ineligible unless the gate says more.
    const why =
      request.only === undefined || request.only.id === k.id
        ? request.gate?.(k)
        : (request.gate?.(k) ?? NOT_ONLY)
    if (why === undefined) continue
    // A timed block wins over an untimed one (a dead key): the caller can wait for it.
    if (why.until === undefined) {
      reason ??= why.reason
    } else if (earliest === undefined || why.until < earliest) {
      earliest = why.until
      reason = why.reason
    }
  }
  if (!anyUntried) return new NoKeyAvailable({ reason: "tried", message: reasonText.tried })
  const r = reason ?? "ineligible"
  const wait = earliest === undefined ? undefined : Duration.millis(Math.max(0, earliest - now))
  const message =
    wait === undefined
      ? reasonText[r]
      : `${reasonText[r]}; the first may be eligible in ${Duration.format(wait)}`
  return wait === undefined
    ? new NoKeyAvailable({ reason: r, message })
    : new NoKeyAvailable({ reason: r, message, retryAfter: wait })
}
