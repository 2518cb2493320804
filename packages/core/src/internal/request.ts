// A selection request as decorators narrow it and strategies read it (see `KeySelector.ts`):
// gates, keeping to one key, the candidates, and why there are none.
import * as Duration from "effect/Duration"
import type * as Key from "../Key.js"
import type * as KeySelector from "../KeySelector.js"
import { NoKeyAvailable } from "./decision.js"

export const withGate = (
  request: KeySelector.SelectRequest,
  gate: KeySelector.Gate
): KeySelector.SelectRequest => {
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

const NOT_ONLY: KeySelector.Ineligible = { reason: "ineligible" }

export const withOnly = (request: KeySelector.SelectRequest, key: Key.Key): KeySelector.SelectRequest => {
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

export const isCandidate = (request: KeySelector.SelectRequest, key: Key.Key): boolean =>
  (request.only === undefined || request.only.id === key.id) &&
  !request.tried.has(key.id) &&
  (request.gate === undefined || request.gate(key) === undefined)

export const candidates = (
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): ReadonlyArray<Key.Key> => {
  const out: Array<Key.Key> = []
  for (const k of keys) if (isCandidate(request, k)) out.push(k)
  return out
}

const reasonText: Record<KeySelector.Reason, string> = {
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
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>,
  now: number
): NoKeyAvailable => {
  if (keys.length === 0) return new NoKeyAvailable({ reason: "empty", message: reasonText.empty })
  let reason: KeySelector.Reason | undefined
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
