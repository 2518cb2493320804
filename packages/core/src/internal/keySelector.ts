import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Key from "../Key.js"
import type * as KeySelector from "../KeySelector.js"
import { isNoKeyAvailable, isWait, NoKeyAvailable, Wait } from "./decision.js"

/** The Effect form of a decision: its waits run until it is a lease or a refusal. */
export const run = (decision: KeySelector.Decision): Effect.Effect<KeySelector.Lease, NoKeyAvailable> =>
  isWait(decision)
    ? Effect.flatMap(decision.effect, run)
    : isNoKeyAvailable(decision)
      ? Effect.fail(decision)
      : Effect.succeed(decision)

export const andThen = (
  decision: KeySelector.Decision,
  f: (settled: KeySelector.Lease | NoKeyAvailable) => KeySelector.Decision
): KeySelector.Decision =>
  isWait(decision) ? new Wait(Effect.map(decision.effect, (next) => andThen(next, f))) : f(decision)

const toEffect = (r: KeySelector.Reported): Effect.Effect<void> => (Effect.isEffect(r) ? r : Effect.void)

export const report = (lease: KeySelector.Lease, outcome: KeySelector.Outcome): Effect.Effect<void> =>
  Effect.suspend(() => toEffect(lease.unsafeReport(outcome)))

export const andReport = (
  first: KeySelector.Reported,
  next: () => KeySelector.Reported
): KeySelector.Reported =>
  Effect.isEffect(first)
    ? Effect.zipRight(
        first,
        Effect.suspend(() => toEffect(next()))
      )
    : next()

const nowhere = (): void => {}

// A class: one small object per lease, its Effect form a method rather than a closure of its own.
class Leased implements KeySelector.Lease {
  // Its own tag, so that telling decisions apart reads one field of one shape.
  readonly _tag = "Lease"
  constructor(
    readonly key: Key.Key,
    readonly unsafeReport: (outcome: KeySelector.Outcome) => KeySelector.Reported
  ) {}
  report(outcome: KeySelector.Outcome): Effect.Effect<void> {
    return report(this, outcome)
  }
}

export const lease = (
  key: Key.Key,
  unsafeReport: (outcome: KeySelector.Outcome) => KeySelector.Reported = nowhere
): KeySelector.Lease => new Leased(key, unsafeReport)

/** The one "report once" guard of the selection path: `select` hands out these. */
export const once = (inner: KeySelector.Lease): KeySelector.Lease => {
  let reported = false
  return new Leased(inner.key, (outcome) => {
    if (reported) return
    reported = true
    return inner.unsafeReport(outcome)
  })
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

const NOT_ONLY: KeySelector.Ineligible = { reason: "ineligible" }

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
