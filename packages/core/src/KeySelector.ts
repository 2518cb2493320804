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
 * Each strategy writes its choice once, shaped like Effect's own `Clock` (whose Effect form is
 * derived from its synchronous one): `decide` answers synchronously a lease, a refusal
 * ({@link NoKeyAvailable}), or a {@link Wait} carrying the Effect to run first (a permit, a credit
 * lookup, a probe). `select` is derived from it ({@link fromDecide}), and a lease's report is a
 * plain function. So every stack decides synchronously unless it really has to wait, and the two
 * forms cannot disagree. A strategy written only as an Effect ({@link make}) still works anywhere;
 * it just never takes the synchronous path.
 *
 * Decorators (health, credit, concurrency, by-model) require an inner `KeySelector` and provide a
 * new one: they narrow the request's {@link Gate}, map the inner decision ({@link andThen}) and
 * wrap the lease's report ({@link andReport}).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import type * as Key from "./Key.js"
import * as internal from "./internal/keySelector.js"
import * as leases from "./internal/lease.js"
import * as requests from "./internal/request.js"
import type * as UpstreamError from "./UpstreamError.js"

export type {
  /**
   * Why a key cannot take this request now.
   *
   * @since 0.1.0
   * @category Models
   */
  Reason,
  /**
   * @since 0.1.0
   * @category Models
   */
  Ineligible,
  /**
   * Whether a key may take the request: `undefined` means yes.
   *
   * @since 0.1.0
   * @category Models
   */
  Gate,
  /**
   * What the request is, as selection sees it.
   *
   * @since 0.1.0
   * @category Models
   */
  SelectRequest
} from "./internal/request.js"
import type { Gate, SelectRequest } from "./internal/request.js"

export type {
  /**
   * How an attempt ended.
   *
   * @since 0.1.0
   * @category Models
   */
  Outcome,
  /**
   * What a report answers: nothing (it is done), or an Effect still to run.
   *
   * @since 0.3.0
   * @category Models
   */
  Reported,
  /**
   * One key, handed out for one attempt.
   *
   * @since 0.1.0
   * @category Models
   */
  Lease
} from "./internal/lease.js"
import type { Lease, Outcome, Reported } from "./internal/lease.js"

/**
 * @since 0.1.0
 * @category Constructors
 */
export const success: (
  latency: Duration.DurationInput,
  cost?: number | undefined,
  window?: UpstreamError.RateWindow | undefined
) => Outcome = leases.success

/**
 * @since 0.1.0
 * @category Constructors
 */
export const failure: (latency: Duration.DurationInput, error: UpstreamError.UpstreamError) => Outcome =
  leases.failure

/**
 * @since 0.1.0
 * @category Constructors
 */
export const cancelled: (latency?: Duration.DurationInput) => Outcome = leases.cancelled

/**
 * A strategy's synchronous decision: a lease, a refusal, or {@link Wait}.
 *
 * @since 0.3.0
 * @category Models
 */
export type Decision = Lease | NoKeyAvailable | Wait

export {
  /**
   * No key can take the request. `retryAfter` is when the earliest key may become eligible.
   *
   * @since 0.1.0
   * @category Errors
   */
  NoKeyAvailable,
  /**
   * The answer of a decision that cannot complete synchronously: run `effect` (a permit wait, a
   * credit lookup, a probe, a read of a store without synchronous forms), whose result is the
   * decision, retried or completed. A decision that answers one has taken nothing.
   *
   * @since 0.3.0
   * @category Models
   */
  Wait,
  /**
   * A refusal, told by its tag (cheaper than `instanceof`, which the hot path avoids).
   *
   * @since 0.3.0
   * @category Predicates
   */
  isNoKeyAvailable,
  /**
   * @since 0.3.0
   * @category Predicates
   */
  isWait
} from "./internal/decision.js"
import type { NoKeyAvailable, Wait } from "./internal/decision.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /**
   * The strategy's choice, made synchronously with no fiber: a lease, a refusal, or a {@link Wait}
   * carrying the Effect to run first. The gateway leases most requests this way
   * (`Balancer.unsafeStart`); a `Wait` sends the request to the Effect path. Decorators call
   * their inner selector's `decide` and map its answer ({@link andThen}).
   */
  readonly decide: (request: SelectRequest) => Decision
  /**
   * Leases a key for one attempt: `decide`, with its waits run (derived, {@link fromDecide}).
   * Callers run it uninterruptibly ({@link use}, {@link scoped} and the `Balancer` do), so a lease
   * cannot be lost between being handed out and being held; a wait that blocks (for a permit, say)
   * makes itself interruptible and gives back what it took if interrupted. Its leases count only
   * their first report.
   */
  readonly select: (request: SelectRequest) => Effect.Effect<Lease, NoKeyAvailable>
}

/**
 * @since 0.1.0
 * @category Context
 */
export class KeySelector extends Context.Tag("@or-balancer/core/KeySelector")<KeySelector, Service>() {}

/**
 * A selector from its synchronous decision: `select` is derived (its waits run, its leases
 * reported once). Every built-in strategy is made this way.
 *
 * @since 0.3.0
 * @category Constructors
 */
export const fromDecide: (decide: (request: SelectRequest) => Decision) => Service = internal.fromDecide

/**
 * A selector written only as an Effect (a user's own strategy): it works under every decorator
 * and in every stack, and simply never takes the synchronous path (its decision is always a
 * {@link Wait}).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make: (select: Service["select"]) => Service = internal.make

/**
 * A lease whose report is `report` (a plain function, or one answering an Effect); with none, it
 * reports nowhere.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const lease: (key: Key.Key, report?: (outcome: Outcome) => Reported) => Lease = leases.lease

/**
 * Runs a lease's report as an Effect (whatever its report answers).
 *
 * @since 0.3.0
 * @category Combinators
 */
export const report: (lease: Lease, outcome: Outcome) => Effect.Effect<void> = leases.report

/**
 * Chains two reports: `first`'s answer, then `next`'s (an Effect only if either is one).
 * Decorators use it to report to their inner lease after their own bookkeeping.
 *
 * @since 0.3.0
 * @category Combinators
 */
export const andReport: (first: Reported, next: () => Reported) => Reported = leases.andReport

/**
 * Whether a report (or a store write of the same shape) left an Effect still to run.
 *
 * @since 0.5.0
 * @category Guards
 */
export const isPending: (reported: Reported) => reported is Effect.Effect<void> = leases.isPending

/**
 * Reports `outcome` to a lease the decision will not use (it gives back what the lease holds),
 * then continues with `then`: at once, or after the report's Effect if it answers one.
 *
 * @since 0.3.0
 * @category Combinators
 */
export const giveBack: (lease: Lease, outcome: Outcome, then: () => Decision) => Decision = internal.giveBack

/**
 * Maps a decision through its waits: `f` sees the lease or refusal it comes to, synchronously
 * when it is one already. How a decorator adds its own step to its inner selector's decision.
 *
 * @since 0.3.0
 * @category Combinators
 */
export const andThen: (decision: Decision, f: (settled: Lease | NoKeyAvailable) => Decision) => Decision =
  internal.andThen

/**
 * The decision as an Effect: its waits run until it is a lease or a refusal.
 *
 * @since 0.3.0
 * @category Combinators
 */
export const toEffect: (decision: Decision) => Effect.Effect<Lease, NoKeyAvailable> = internal.run

/**
 * A {@link Wait} running `effect`, then `then` on its value: the decision's next step.
 *
 * @since 0.3.0
 * @category Constructors
 */
export const waitFor: <A>(effect: Effect.Effect<A>, then: (a: A) => Decision) => Wait = internal.waitFor

/**
 * @since 0.3.0
 * @category Predicates
 */
export const isLease: (decision: Decision) => decision is Lease = internal.isLease

/**
 * A lease whose report runs once: later reports are ignored.
 *
 * @since 0.1.0
 * @category Combinators
 */
export const once: (lease: Lease) => Lease = leases.once

/**
 * Leases a key for `f` and reports on every exit: `outcome` maps how `f` ended to the report
 * (by default a success, or `Cancelled` on any failure, interruption included).
 *
 * @since 0.1.0
 * @category Combinators
 */
export const use: <A, E, R>(
  selector: Service,
  request: SelectRequest,
  f: (lease: Lease) => Effect.Effect<A, E, R>,
  outcome?: (exit: Exit.Exit<A, E>) => Outcome
) => Effect.Effect<A, E | NoKeyAvailable, R> = leases.use

/**
 * A lease as a scoped resource, for code that holds one across several steps: reported
 * `Cancelled` when the scope closes, unless it was reported before (the first report counts).
 *
 * @since 0.1.0
 * @category Combinators
 */
export const scoped: (
  selector: Service,
  request: SelectRequest
) => Effect.Effect<Lease, NoKeyAvailable, Scope.Scope> = leases.scoped

/**
 * Narrows a request's gate with another one (both must admit the key).
 *
 * @since 0.1.0
 * @category Combinators
 */
export const withGate: (request: SelectRequest, gate: Gate) => SelectRequest = requests.withGate

/**
 * Keeps a request to one key, which must be a candidate of it: the same as narrowing its gate to
 * that key (every other key `ineligible`), but strategies lease the key without a scan of the pool.
 *
 * @since 0.3.0
 * @category Combinators
 */
export const withOnly: (request: SelectRequest, key: Key.Key) => SelectRequest = requests.withOnly

/**
 * Is the key a candidate for this request: admitted by the gate and not already tried?
 *
 * @since 0.1.0
 * @category Predicates
 */
export const isCandidate: (request: SelectRequest, key: Key.Key) => boolean = requests.isCandidate

/**
 * The keys a strategy may choose among, in pool order.
 *
 * @since 0.1.0
 * @category Combinators
 */
export const candidates: (request: SelectRequest, keys: ReadonlyArray<Key.Key>) => ReadonlyArray<Key.Key> =
  requests.candidates

/**
 * Explains why no key of `keys` is a candidate, with the earliest time one may become eligible.
 * Strategies call this when `candidates` is empty, so every strategy fails the same way.
 *
 * @since 0.1.0
 * @category Errors
 */
export const explain: (request: SelectRequest, keys: ReadonlyArray<Key.Key>, now: number) => NoKeyAvailable =
  requests.explain
