// The two kinds of attempt the run loop hands out: an Effect attempt (held, the caller's
// `Scoped`) and a synchronous first attempt (`Started`). Each is reported exactly once.
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Balancer from "../Balancer.js"
import type * as Key from "../Key.js"
import type * as KeySelector from "../KeySelector.js"
import type * as Monitor from "../Monitor.js"
import type * as UpstreamError from "../UpstreamError.js"
import type { AllAttemptsFailed } from "./allAttemptsFailed.js"
import { isPending } from "./lease.js"

/**
 * One attempt on one lease. It is reported exactly once, whichever way it ends: that report is
 * also what gives back its permit, reservation or in-flight count. What the two kinds of attempt
 * share; each adds the settlers of its own kind (Effect or synchronous), and nothing else.
 */
/**
 * An attempt's latency as a Duration. Clock millis are whole numbers and most attempts take under
 * a second, so those Durations (immutable, compared by value) are made once each rather than
 * per outcome: `Duration.millis` checks its input and allocates, a few % of a settle.
 */
const LATENCIES: Array<Duration.Duration | undefined> = new Array(1024)
const latencyOf = (ms: number): Duration.Duration => {
  if (!Number.isInteger(ms) || ms < 0 || ms >= LATENCIES.length) return Duration.millis(ms)
  return (LATENCIES[ms] ??= Duration.millis(ms))
}

export abstract class Settling {
  /** Set when the key failed this attempt (the loop then decides whether to go on). */
  error: UpstreamError.UpstreamError | undefined = undefined
  readonly key: Key.Key
  protected reported = false
  constructor(
    lease: KeySelector.Lease,
    protected readonly clock: Clock.Clock,
    readonly start: number
  ) {
    this.key = lease.key
  }

  /** The outcome to report, or `undefined` when reported already; latency counted from the start. */
  protected claim(
    tag: KeySelector.Outcome["_tag"],
    cost: number | undefined,
    error: UpstreamError.UpstreamError | undefined,
    window?: UpstreamError.RateWindow | undefined
  ): KeySelector.Outcome | undefined {
    if (this.reported) return undefined
    this.reported = true
    const latency = latencyOf(this.clock.unsafeCurrentTimeMillis() - this.start)
    return tag === "Success"
      ? window === undefined
        ? { _tag: "Success", latency, cost }
        : { _tag: "Success", latency, cost, window }
      : tag === "Failure"
        ? { _tag: "Failure", latency, error: error! }
        : { _tag: "Cancelled", latency }
  }
}

/**
 * An attempt of the Effect loop. Held, it is the caller's `Scoped`. A class because one is built
 * for every request: its settling is shared code; only `succeed` and `fail` are closures of its
 * own, so that they work detached.
 */
export class Attempt<A> extends Settling implements Balancer.Scoped<A> {
  value: A = undefined as A
  constructor(
    private readonly lease: KeySelector.Lease,
    readonly attempt: number,
    clock: Clock.Clock,
    private readonly monitor: Pick<Monitor.Service, "finished">
  ) {
    super(lease, clock, clock.unsafeCurrentTimeMillis())
    // Own closures, not methods: `Stream.tapError(held.fail)` must work detached from the object.
    this.succeed = (cost, window) => Effect.suspend(() => this.settleNow("Success", cost, undefined, window))
    this.fail = (error) => Effect.suspend(() => this.settleNow("Failure", undefined, error))
  }

  readonly succeed: (
    cost?: number | undefined,
    window?: UpstreamError.RateWindow | undefined
  ) => Effect.Effect<void>
  readonly fail: (error: UpstreamError.UpstreamError) => Effect.Effect<void>

  /** Reports now, unless reported already. */
  settleNow(
    tag: KeySelector.Outcome["_tag"],
    cost: number | undefined,
    error: UpstreamError.UpstreamError | undefined,
    window?: UpstreamError.RateWindow | undefined
  ): Effect.Effect<void> {
    const outcome = this.claim(tag, cost, error, window)
    if (outcome === undefined) return Effect.void
    return Effect.zipRight(this.lease.report(outcome), this.monitor.finished(this.key, outcome))
  }

  get cancel(): Effect.Effect<void> {
    return Effect.suspend(() => this.settleNow("Cancelled", undefined, undefined))
  }
}

/** How a failed synchronous start goes on: the Effect loop, from that attempt. */
export interface Continue {
  readonly run: <A, E, R>(
    after: Started,
    use: (key: Key.Key, info: Balancer.AttemptInfo) => Effect.Effect<A, E, R>,
    costOf: ((a: A) => number | undefined) | undefined,
    onHeld: ((held: Balancer.Scoped<A>) => void) | undefined
  ) => Effect.Effect<any, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R>
}

/** A first attempt started synchronously (`unsafeStart`): settled synchronously, with no Effect. */
export class Started extends Settling implements Balancer.Started {
  constructor(
    private readonly lease: KeySelector.Lease,
    clock: Clock.Clock,
    private readonly finished: (key: Key.Key, outcome: KeySelector.Outcome) => void,
    start: number,
    readonly request: Balancer.RunRequest,
    private readonly next: Continue
  ) {
    super(lease, clock, start)
  }

  // Getters answering a closure only when read, rather than three own closures built for every
  // request: each still works detached (a callback may hold it), and the gateway reads one.
  get unsafeSucceed(): (cost?: number | undefined, window?: UpstreamError.RateWindow | undefined) => void {
    return (cost, window) => this.settle("Success", cost, undefined, window)
  }
  get unsafeFail(): (error: UpstreamError.UpstreamError) => void {
    return (error) => {
      if (!this.reported) this.error = error
      this.settle("Failure", undefined, error)
    }
  }
  get unsafeCancel(): () => void {
    return () => this.settle("Cancelled", undefined, undefined)
  }

  run<A, E, R>(
    use: (key: Key.Key, info: Balancer.AttemptInfo) => Effect.Effect<A, E, R>,
    options?: Balancer.RunOptions<A>
  ): Effect.Effect<A, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R> {
    return this.next.run(this, use, options?.costOf, undefined)
  }

  runHeld<A, E, R>(
    use: (key: Key.Key, info: Balancer.AttemptInfo) => Effect.Effect<A, E, R>,
    onHeld: (held: Balancer.Scoped<A>) => void
  ): Effect.Effect<Balancer.Scoped<A>, E | AllAttemptsFailed | KeySelector.NoKeyAvailable, R> {
    return this.next.run(this, use, undefined, onHeld)
  }

  private settle(
    tag: KeySelector.Outcome["_tag"],
    cost: number | undefined,
    error: UpstreamError.UpstreamError | undefined,
    window?: UpstreamError.RateWindow | undefined
  ): void {
    const outcome = this.claim(tag, cost, error, window)
    if (outcome === undefined) return
    const reported = this.lease.unsafeReport(outcome)
    // Only a lease of a hand-written decision may answer an Effect here (`Wait`s never start).
    if (isPending(reported)) Effect.runFork(reported)
    this.finished(this.key, outcome)
  }
}

/** A selection's request but for its gate and deadline, which each try sets. */
export const selectBase = (
  request: Balancer.RunRequest,
  attempt: number,
  tried: ReadonlySet<string>
): Omit<KeySelector.SelectRequest, "gate" | "deadline"> => ({
  model: request.model,
  attempt,
  tried,
  affinity: request.affinity
})

export const valueOf = <A>(done: Attempt<A>): A => done.value
export const scopedOf = <A>(done: Attempt<A>): Balancer.Scoped<A> => done
