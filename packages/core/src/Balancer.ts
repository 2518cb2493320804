/**
 * The run loop: select a key, call, report the outcome, and on a retryable failure fail over to
 * another key following a `Schedule`, honouring `Retry-After`, within a retry budget.
 *
 * ```
 * run(request, use)
 *   1. KeySelector.select({ model, attempt, tried, affinity, gate })  -> Lease (scoped)
 *   2. use(lease.key)
 *   3. lease.report(outcome)                                          -> every strategy learns
 *   4. UpstreamError.disposition(error): fail / retry same / retry other / eject
 *   └─ the result, the request's own error, or AllAttemptsFailed { attempts }
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/balancer.js"
import type * as Key from "./Key.js"
import type * as KeyPool from "./KeyPool.js"
import type * as KeySelector from "./KeySelector.js"
import type * as Monitor from "./Monitor.js"
import type * as StateStore from "./StateStore.js"
import type * as UpstreamError from "./UpstreamError.js"

/**
 * What the caller knows of a request before a key is chosen.
 *
 * @since 0.1.0
 * @category Models
 */
export interface RunRequest {
  readonly model?: string | undefined
  /** Affinity id for sticky routing (`session_id`, `prompt_cache_key`, a user id, ...). */
  readonly affinity?: string | undefined
  /**
   * Keys this request must not be given at all (not merely preferred against, as failed keys
   * are): a hedged request's second attempt excludes the key of its first. Only read by
   * {@link Service.unsafeStart}, whose lease for such a request is not counted as a new request
   * by the retry budget.
   *
   * @since 0.3.0
   */
  readonly exclude?: ReadonlySet<string> | undefined
}

/**
 * A request's first attempt, started synchronously by {@link Service.unsafeStart}. Settle it
 * exactly once: the first of `unsafeSucceed`, `unsafeFail` and `unsafeCancel` reports (to the
 * strategies, which also gives back what the lease holds, and to the monitor); the others do
 * nothing. They work detached from the object.
 *
 * @since 0.2.0
 * @category Models
 */
export interface Started {
  readonly key: Key.Key
  readonly unsafeSucceed: (cost?: number | undefined, window?: UpstreamError.RateWindow | undefined) => void
  readonly unsafeFail: (error: UpstreamError.UpstreamError) => void
  /** No verdict on the key (the answer was abandoned, the client went away). */
  readonly unsafeCancel: () => void
  /**
   * After `unsafeFail`, before any of its answer reached the caller: the request goes on from this
   * failed first attempt as `Service.run` would from its own. It records the failure, cools the
   * key down, then fails over or gives up; its deadline counts from this attempt's start. Called
   * on an attempt that did not fail, it dies (a defect: there is nothing to go on from).
   */
  readonly run: <A, E, R>(
    use: (key: Key.Key, info: AttemptInfo) => Effect.Effect<A, E, R>,
    options?: RunOptions<A>
  ) => Effect.Effect<A, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R>
  /** {@link run}, handing the attempt that succeeded over as `Service.runHeld` does. */
  readonly runHeld: <A, E, R>(
    use: (key: Key.Key, info: AttemptInfo) => Effect.Effect<A, E, R>,
    onHeld: (held: Scoped<A>) => void
  ) => Effect.Effect<Scoped<A>, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R>
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface AttemptInfo {
  /** 1 for the first attempt. */
  readonly attempt: number
}

export {
  /**
   * One failed attempt, as listed in {@link AllAttemptsFailed}.
   *
   * @since 0.1.0
   * @category Models
   */
  Attempt,
  /**
   * Every attempt the request was allowed failed. `reason` says what stopped it: attempts ran
   * out, the retry budget was spent, or no further key became eligible before the deadline.
   *
   * @since 0.1.0
   * @category Errors
   */
  AllAttemptsFailed,
  /**
   * The default backoff: exponential from 25 ms, jittered, capped at 2 s.
   *
   * @since 0.1.0
   * @category Constructors
   */
  defaultBackoff
} from "./internal/allAttemptsFailed.js"
import type { AllAttemptsFailed } from "./internal/allAttemptsFailed.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** Attempts per request, the first included. Default 4. */
  readonly maxAttempts?: number | undefined
  /**
   * Backoff between attempts, fed each error. Default: exponential from 25 ms, doubling,
   * jittered, capped at 2 s. A `Retry-After` longer than the computed delay wins. Failing over
   * after an ejecting error (401, 402) is immediate.
   */
  readonly backoff?: Schedule.Schedule<unknown, UpstreamError.UpstreamError> | undefined
  /** How long a request may wait for a key to become eligible. Default 30 s. */
  readonly deadline?: Duration.DurationInput | undefined
  /**
   * Longest cooldown a `Retry-After` may set on a key or account. Default 5 minutes: one answer
   * saying `Retry-After: 999999` must not take a key out for days; after the cap the key is tried
   * again (and a health-aware stack tests it first).
   */
  readonly maxCooldown?: Duration.DurationInput | undefined
  /**
   * A key's first 401 closes it in this Balancer, whatever the strategy stack: no new attempt
   * starts on it (only those already in flight may still reach it) until a pool change brings the
   * key in again as a new `Key` (a reload). Default true.
   */
  readonly closeOnUnauthorized?: boolean | undefined
  /**
   * Retries may be at most `ratio` of recent requests plus `minPerSecond`. `false` turns the budget
   * off. Default `{ ratio: 0.2, minPerSecond: 10, window: "10 seconds" }`.
   */
  readonly budget?:
    | { readonly ratio: number; readonly minPerSecond: number; readonly window: Duration.DurationInput }
    | false
    | undefined
  /**
   * Spans through Effect's `Tracer` (default `true`): `run`, `runScoped` and `runHeld` make an
   * `or_balancer.request` span per request (attributes `or_balancer.model`, `.attempts`, `.error`,
   * `.gave_up`) and an `or_balancer.attempt` span per attempt, its child and the parent of what
   * `use` traces (`or_balancer.key` (the key's id), `.attempt` (1 for the first), `.outcome`
   * (`success`, `failure`, `cancelled`: what the strategies were told), `.error` (the error's tag),
   * `.retry` (what followed: `fail`, `retry-same`, `retry-other`, `eject`), `.cost`). A held
   * attempt's span ends when it is settled. Spans carry ids, tags and numbers, never a secret or an
   * upstream message. With no tracer installed (Effect's built-in one) or tracing disabled, none is
   * made. `false` for a caller that makes its own (the gateway); `unsafeStart` never makes spans.
   */
  readonly spans?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface RunOptions<A> {
  /** Reads the USD cost from a result (e.g. `usage.cost`), reported to the strategies. */
  readonly costOf?: ((a: A) => number | undefined) | undefined
}

/**
 * What {@link Service.runScoped} (and `runHeld`) gives back: the value, and the
 * still-open lease through which the caller reports the final outcome later (a stream reports when
 * it ends). The first of `succeed`, `fail` and `cancel` to run reports; the others do nothing.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Scoped<A> {
  readonly value: A
  readonly key: Key.Key
  readonly attempt: number
  /** Reports the outcome (latency counted from the attempt's start). Works detached (point-free). */
  readonly succeed: (
    cost?: number | undefined,
    window?: UpstreamError.RateWindow | undefined
  ) => Effect.Effect<void>
  readonly fail: (error: UpstreamError.UpstreamError) => Effect.Effect<void>
  /** Gives the lease back with no verdict on the key (the answer was abandoned). Idempotent. */
  readonly cancel: Effect.Effect<void>
}

/**
 * A cooldown set by a `Retry-After` (429 or 503).
 *
 * @since 0.1.0
 * @category Models
 */
export interface Cooldown {
  readonly scope: "key" | "account"
  readonly id: string
  readonly until: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly run: <A, E, R>(
    request: RunRequest,
    use: (key: Key.Key, info: AttemptInfo) => Effect.Effect<A, E, R>,
    options?: RunOptions<A>
  ) => Effect.Effect<A, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R>
  /**
   * Like `run`, but for answers that go on after `use` returns (streams): `use` succeeding means
   * the first byte arrived, and the lease stays held in the caller's scope until it closes. Failures
   * of `use` fail over as in `run`; after it succeeds there is no replay.
   */
  readonly runScoped: <A, E, R>(
    request: RunRequest,
    use: (key: Key.Key, info: AttemptInfo) => Effect.Effect<A, E, R>
  ) => Effect.Effect<Scoped<A>, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R | Scope.Scope>
  /**
   * `runScoped` without a scope, for a server that settles every answer itself and cannot afford
   * a scope per request (the gateway: a `Scope` made and closed per request cost about 13 µs of
   * CPU, measured). `onHeld` is called synchronously, while the hand-over cannot be interrupted,
   * with the attempt that succeeded; from then on the caller must settle it exactly once on every
   * path (`succeed`, `fail`, or `cancel` when the answer is abandoned, interruption included),
   * or its key stays leased.
   */
  readonly runHeld: <A, E, R>(
    request: RunRequest,
    use: (key: Key.Key, info: AttemptInfo) => Effect.Effect<A, E, R>,
    onHeld: (held: Scoped<A>) => void
  ) => Effect.Effect<Scoped<A>, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R>
  /**
   * Runs every request with at most `concurrency` in flight; one `Either` per input, in order
   * (the seed's `gather(return_exceptions=True)`, typed).
   */
  readonly batch: <I, A, E, R>(
    inputs: Iterable<I>,
    f: (input: I) => Effect.Effect<A, E, R>,
    options: { readonly concurrency: number }
  ) => Effect.Effect<Array<Either.Either<A, E>>, never, R>
  /** Active `Retry-After` cooldowns. */
  readonly cooldowns: Effect.Effect<ReadonlyArray<Cooldown>>
  /**
   * A request's first attempt, started synchronously and with no fiber: the hot path of a
   * server outside Effect (the gateway forwards most requests this way; a fiber per request was
   * most of its CPU over a raw proxy's, measured). It leases a key when every part can decide at
   * once: the selector's `decide` answers a lease (no `Wait`), the state store and monitor have
   * their synchronous forms, and a key is eligible now. Otherwise it answers `undefined`, and the caller runs the
   * request with `runHeld` (or `run`), which waits, backs off and fails over.
   *
   * The caller settles the attempt exactly once. A failed one goes on with `started.run(use)` or
   * `started.runHeld(use, onHeld)`, as retries and failover are Effect's work.
   */
  readonly unsafeStart: (request: RunRequest) => Started | undefined
}

/**
 * @since 0.1.0
 * @category Context
 */
export class Balancer extends Context.Tag("@or-balancer/core/Balancer")<Balancer, Service>() {}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: (
  options?: Options
) => Effect.Effect<
  Service,
  never,
  KeySelector.KeySelector | KeyPool.KeyPool | Monitor.Monitor | StateStore.StateStore
> = internal.make

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<
  Balancer,
  never,
  KeySelector.KeySelector | KeyPool.KeyPool | Monitor.Monitor | StateStore.StateStore
> => Layer.effect(Balancer, make(options))
