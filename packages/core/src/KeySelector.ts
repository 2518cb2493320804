/**
 * The service at the centre: every balancing strategy provides a `KeySelector`.
 *
 * `select` hands out a {@link Lease} on one key. The caller reports how the attempt ended through
 * the lease, exactly once, and that report also gives back whatever the lease holds (a
 * concurrency permit, an in-flight count, a credit reservation): every strategy learns from every
 * answer (health counts failures, credit subtracts cost, least-busy tracks in-flight). An attempt
 * that reached no verdict (interrupted, or the lease never used) is reported as `Cancelled`.
 *
 * Leases are released by the report rather than by a `Scope`: a scope per attempt, provided to
 * the selector and closed with its finalizers, cost more than the whole composed strategy stack
 * (measured: ~9 µs against ~3 µs). {@link use} and {@link scoped} give the usual safe forms, and
 * core's `Balancer` reports on every exit.
 *
 * Decorators (health, credit, concurrency, by-model) require an inner `KeySelector` and provide a
 * new one: they narrow the request's {@link Gate} and wrap the lease's `report`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Key from "./Key.js"
import type * as UpstreamError from "./UpstreamError.js"

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
}

/**
 * How an attempt ended.
 *
 * @since 0.1.0
 * @category Models
 */
export type Outcome =
  | { readonly _tag: "Success"; readonly latency: Duration.Duration; readonly cost: number | undefined }
  | {
      readonly _tag: "Failure"
      readonly latency: Duration.Duration
      readonly error: UpstreamError.UpstreamError
    }
  /** No verdict on the key: the attempt was interrupted, or the lease was never used. */
  | { readonly _tag: "Cancelled"; readonly latency: Duration.Duration }

/**
 * @since 0.1.0
 * @category Constructors
 */
export const success = (latency: Duration.DurationInput, cost?: number | undefined): Outcome => ({
  _tag: "Success",
  latency: Duration.decode(latency),
  cost
})

/**
 * @since 0.1.0
 * @category Constructors
 */
export const failure = (latency: Duration.DurationInput, error: UpstreamError.UpstreamError): Outcome => ({
  _tag: "Failure",
  latency: Duration.decode(latency),
  error
})

/**
 * @since 0.1.0
 * @category Constructors
 */
export const cancelled = (latency: Duration.DurationInput = Duration.zero): Outcome => ({
  _tag: "Cancelled",
  latency: Duration.decode(latency)
})

const CANCELLED = cancelled()
const SUCCESS = success(0)

/**
 * One key, handed out for one attempt.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Lease {
  readonly key: Key.Key
  /**
   * Reports how the attempt ended and gives back what the lease holds. Call it exactly once,
   * on every path (`Cancelled` when there is no verdict): {@link use}, {@link scoped} and the
   * `Balancer` do.
   */
  readonly report: (outcome: Outcome) => Effect.Effect<void>
}

/**
 * A lease from {@link Service.unsafeSelect}: it can also be reported synchronously. Its `report`
 * and `unsafeReport` are the same report (whichever runs first counts).
 *
 * @since 0.2.0
 * @category Models
 */
export interface UnsafeLease extends Lease {
  readonly unsafeReport: (outcome: Outcome) => void
}

/**
 * No key can take the request. `retryAfter` is when the earliest key may become eligible.
 *
 * @since 0.1.0
 * @category Errors
 */
export class NoKeyAvailable extends Schema.TaggedError<NoKeyAvailable>()("NoKeyAvailable", {
  reason: Schema.Literal(
    "empty",
    "tried",
    "cooldown",
    "unhealthy",
    "credit",
    "concurrency",
    "model",
    "ineligible"
  ),
  message: Schema.String,
  retryAfter: Schema.optional(Schema.DurationFromSelf)
}) {}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /**
   * Leases a key for one attempt. Callers run it uninterruptibly ({@link use}, {@link scoped} and
   * the `Balancer` do), so a lease cannot be lost between being handed out and being held; a
   * selector that waits (for a permit, say) makes that wait interruptible itself and gives back
   * what it took if interrupted.
   */
  readonly select: (request: SelectRequest) => Effect.Effect<Lease, NoKeyAvailable>
  /**
   * The same choice, made synchronously with no fiber, for callers on a hot path outside Effect
   * (the gateway runs most requests this way, through `Balancer.unsafeStart`). It answers
   * `undefined` when it cannot decide without waiting (for a permit, a credit lookup) or without
   * an effect: the caller then runs `select`. Optional: a decorator offers it only when its inner
   * selector does, so one selector without it turns the fast path off for the whole stack.
   */
  readonly unsafeSelect?: ((request: SelectRequest) => UnsafeLease | NoKeyAvailable | undefined) | undefined
}

/**
 * @since 0.1.0
 * @category Context
 */
export class KeySelector extends Context.Tag("@or-balancer/core/KeySelector")<KeySelector, Service>() {}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (select: Service["select"], unsafeSelect?: Service["unsafeSelect"]): Service =>
  KeySelector.of(unsafeSelect === undefined ? { select } : { select, unsafeSelect })

/**
 * A lease that reports nowhere: for strategies that learn nothing from outcomes.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const lease = (key: Key.Key, report?: Lease["report"]): Lease => ({
  key,
  report: report ?? (() => Effect.void)
})

const noReport = (): void => {}

/**
 * A lease that can be reported synchronously: `report` runs `unsafeReport`. With no report, it
 * reports nowhere.
 *
 * @since 0.2.0
 * @category Constructors
 */
export const unsafeLease = (
  key: Key.Key,
  unsafeReport: (outcome: Outcome) => void = noReport
): UnsafeLease => ({
  key,
  report:
    unsafeReport === noReport ? () => Effect.void : (outcome) => Effect.sync(() => unsafeReport(outcome)),
  unsafeReport
})

/**
 * Whether `x`, an answer of {@link Service.unsafeSelect}, is a lease (rather than a refusal, or no answer).
 *
 * @since 0.2.0
 * @category Predicates
 */
export const isUnsafeLease = (x: UnsafeLease | NoKeyAvailable | undefined): x is UnsafeLease =>
  x !== undefined && !(x instanceof NoKeyAvailable)

/**
 * A lease whose report runs once: later reports are ignored.
 *
 * @since 0.1.0
 * @category Combinators
 */
export const once = (lease: Lease): Lease => {
  let reported = false
  return {
    key: lease.key,
    report: (outcome) =>
      Effect.suspend(() => {
        if (reported) return Effect.void
        reported = true
        return lease.report(outcome)
      })
  }
}

/**
 * Leases a key for `f` and reports on every exit: `outcome` maps how `f` ended to the report
 * (by default a success, or `Cancelled` on any failure, interruption included).
 *
 * @since 0.1.0
 * @category Combinators
 */
export const use = <A, E, R>(
  selector: Service,
  request: SelectRequest,
  f: (lease: Lease) => Effect.Effect<A, E, R>,
  outcome: (exit: Exit.Exit<A, E>) => Outcome = (exit) => (Exit.isSuccess(exit) ? SUCCESS : CANCELLED)
): Effect.Effect<A, E | NoKeyAvailable, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(selector.select(request), (lease) =>
      Effect.flatMap(Effect.exit(restore(f(lease))), (exit) =>
        Effect.zipRight(lease.report(outcome(exit)), exit)
      )
    )
  )

/**
 * A lease as a scoped resource, for code that holds one across several steps: reported
 * `Cancelled` when the scope closes, unless it was reported before (the first report counts).
 *
 * @since 0.1.0
 * @category Combinators
 */
export const scoped = (
  selector: Service,
  request: SelectRequest
): Effect.Effect<Lease, NoKeyAvailable, Scope.Scope> =>
  Effect.acquireRelease(Effect.map(selector.select(request), once), (lease) => lease.report(CANCELLED))

/**
 * Narrows a request's gate with another one (both must admit the key).
 *
 * @since 0.1.0
 * @category Combinators
 */
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
    deadline: request.deadline
  }
}

/**
 * Is the key a candidate for this request: admitted by the gate and not already tried?
 *
 * @since 0.1.0
 * @category Predicates
 */
export const isCandidate = (request: SelectRequest, key: Key.Key): boolean =>
  !request.tried.has(key.id) && (request.gate === undefined || request.gate(key) === undefined)

/**
 * The keys a strategy may choose among, in pool order.
 *
 * @since 0.1.0
 * @category Combinators
 */
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
  credit: "every key is out of credit or under its threshold",
  concurrency: "every key is at its concurrency limit",
  model: "no key serves this model",
  ineligible: "no key is eligible"
}

/**
 * Explains why no key of `keys` is a candidate, with the earliest time one may become eligible.
 * Strategies call this when `candidates` is empty, so every strategy fails the same way.
 *
 * @since 0.1.0
 * @category Errors
 */
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
    const why = request.gate?.(k)
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
