/**
 * Hedged requests against stalls. A key that now and then holds a request for seconds before
 * answering (or never answers) sets the tail latency of everything it serves. When a fast-path
 * first attempt still has no response headers after the hedge delay, one more attempt starts on
 * a different key (the stack's own choice with the first key excluded); the first of the two to
 * produce an answer (a body judged whole, or a stream's first event: `answer.ts`) is the one
 * sent, and the other is aborted upstream and its lease reported `Cancelled`. Nothing of the
 * loser has reached the client by then, so nothing is sent twice, streams included.
 *
 * The loser is cancelled rather than failed: a stall is not an error the key returned, and
 * counting one as a failure would eject a key that serves 98 % of its requests well; a key whose
 * attempts really never answer is still failed by `deadlines.headersMs` when no hedge is allowed.
 *
 * The delay is fixed (`hedge.afterMs`) or learned: three times the p95 of the last 256 fast-path
 * answers' latency (each counted at most at the delay then in use, so unhedged stalls cannot
 * carry it away), at least `minMs` (200 ms by default: a stall caught at 500 ms that then meets a
 * busy window or a 503 was Trouble's 1 s tail), and no hedging before 32 answers are seen. Answers, not
 * headers, are sampled (an answer comes no sooner than its head, so the delay errs long); the
 * trigger itself is "no headers yet", so an answer already streaming or generating is never
 * duplicated. A token bucket keeps hedges to `ratio` of requests (`burst` in hand), so a pool
 * where every key stalls costs at most that many more calls.
 *
 * The fiber path (a request that waited for a key, or a retry) is hedged by {@link watch}: the
 * same delay and cap, one hedge per request; a hedge that answers first interrupts the fiber
 * (which aborts its attempt and cancels its lease), and an attempt of the fiber that answers
 * first aborts the hedge.
 */
import type * as Balancer from "@or-balancer/core/Balancer"
import type * as Key from "@or-balancer/core/Key"
import * as Metric from "effect/Metric"
import type * as GatewayConfig from "../GatewayConfig.js"
import { defaultHedge } from "../GatewayConfig.js"
import type { Answer } from "./answer.js"
import type { Settler } from "./settle.js"
import type { EngineState } from "./state.js"
import * as Deadlines from "./deadlines.js"
import type { Failed, RequestContext } from "./upstream.js"
import { startUpstream } from "./upstreamCall.js"

/** How a hedge ended, as `or_balancer_hedges_total{outcome}` and `/status` count it. */
export type Outcome =
  /** the hedge answered first; the other attempt was aborted */
  | "won"
  /** the other attempt answered first; the hedge was aborted */
  | "lost"
  /** the hedge failed (the request went on with the other attempt, or the balancer's retries) */
  | "failed"
  /** the client went away or the request's deadline passed with both under way */
  | "cancelled"
  /** a hedge was due but the rate cap had none in hand */
  | "capped"
  /** a hedge was due but no other key could take it */
  | "no_key"

export type Counts = Record<Outcome, number>

const OUTCOMES: ReadonlyArray<Outcome> = ["won", "lost", "failed", "cancelled", "capped", "no_key"]

const counter = Metric.counter("or_balancer_hedges_total", {
  description: "Hedged requests (a second attempt on another key after a stall), by outcome",
  incremental: true
})
const metrics = Object.fromEntries(OUTCOMES.map((o) => [o, Metric.tagged(counter, "outcome", o)])) as Record<
  Outcome,
  Metric.Metric.Counter<number>
>

/** One attempt of a hedged request: its own upstream call state, its lease and its settler. */
export interface Leg {
  readonly ctx: RequestContext
  readonly started: Balancer.Started
  readonly settler: Settler & { readonly settled: boolean }
}

/** The learned delay over the p95 of recent answers. */
const P95_FACTOR = 3
/**
 * The learned delay: `P95_FACTOR` times the p95 of `samples` (answers' latencies, ms), at least
 * `minMs`. Exported for its test.
 */
export const learnedDelay = (samples: Float64Array, minMs: number): number => {
  const p95 = kth(samples.slice(), Math.floor(0.95 * (samples.length - 1)))
  return Math.max(minMs, Math.ceil(P95_FACTOR * p95))
}

/**
 * The `k`-th smallest of `a` (reordering it): the sorted array's `a[k]`, found by quickselect in
 * linear time rather than a full sort every `RECOMPUTE_EVERY` answers.
 */
const kth = (a: Float64Array, k: number): number => {
  let lo = 0
  let hi = a.length - 1
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!
    let i = lo
    let j = hi
    while (i <= j) {
      while (a[i]! < pivot) i++
      while (a[j]! > pivot) j--
      if (i <= j) {
        const t = a[i]!
        a[i++] = a[j]!
        a[j--] = t
      }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else return a[k]!
  }
  return a[k]!
}

const SAMPLES = 256
const MIN_SAMPLES = 32
const RECOMPUTE_EVERY = 32
/** How soon a hedge that found no other key looks again. */
const RETRY_MS = 50

/** Per engine: the learned delay, the token bucket and the counts. */
class State {
  readonly counts: Counts = { won: 0, lost: 0, failed: 0, cancelled: 0, capped: 0, no_key: 0 }
  private readonly samples = new Float64Array(SAMPLES)
  private seen = 0
  learnedMs: number | undefined
  private tokens: number
  constructor(readonly config: GatewayConfig.HedgeConfig) {
    this.tokens = config.burst
  }
  /** The delay for a request starting now (undefined: none), accruing its share of hedges. */
  delay(): number | undefined {
    this.accrue()
    return this.current()
  }
  accrue(): void {
    this.tokens = Math.min(this.config.burst, this.tokens + this.config.ratio)
  }
  current(): number | undefined {
    return this.config.afterMs ?? this.learnedMs
  }
  /**
   * An answer's latency, at most the delay in use: a stall that was not hedged (capped, no other
   * key) must not raise the delay so that later stalls go unhedged too. A pool whose answers are
   * slower than the delay still raises it: doubled per recompute while over 5 % of them hit it.
   */
  sample(ms: number): void {
    const delay = this.current()
    this.samples[this.seen++ % SAMPLES] = delay === undefined ? ms : Math.min(ms, delay)
    if (this.seen < MIN_SAMPLES || this.seen % RECOMPUTE_EVERY !== 0) return
    this.learnedMs = learnedDelay(this.samples.subarray(0, Math.min(this.seen, SAMPLES)), this.config.minMs)
  }
  inHand(): boolean {
    return this.tokens >= 1
  }
  take(): void {
    this.tokens -= 1
  }
  count(outcome: Outcome): void {
    this.counts[outcome]++
    metrics[outcome].unsafeUpdate(1, [])
  }
}

const states = new WeakMap<EngineState, State | null>()

const stateOf = (engine: EngineState): State | undefined => {
  let s = states.get(engine)
  if (s === undefined) {
    const config = engine.config.hedge === undefined ? defaultHedge : engine.config.hedge
    s = config === false ? null : new State(config)
    states.set(engine, s)
  }
  return s ?? undefined
}

/** The engine's hedge counts (all zero when hedging is off or nothing was hedged yet). */
export const counts = (engine: EngineState): Counts => {
  const s = stateOf(engine)
  return s === undefined
    ? { won: 0, lost: 0, failed: 0, cancelled: 0, capped: 0, no_key: 0 }
    : { ...s.counts }
}

/** The hedge delay now (null: hedging is off, or the delay is not learned yet). */
export const delayMs = (engine: EngineState): number | null => {
  const s = stateOf(engine)
  return s?.config.afterMs ?? s?.learnedMs ?? null
}

/** The fast path's race: its legs, and how to abort whatever of it is still under way. */
export interface Race {
  /** Aborts every attempt still under way (upstream call or answer) and cancels its lease. */
  readonly abort: () => void
  /** Every attempt is settled: the request went on (fiber path) or its answer is sent. */
  readonly settled: () => boolean
}

const abortLeg = (leg: Leg) => {
  if (leg.settler.settled) return
  // No entry in the request's `tried` for an attempt given up on purpose.
  leg.ctx.attempt = undefined
  leg.ctx.upstream?.destroy()
  leg.ctx.response?.destroy()
  leg.settler.unsafeCancel()
}

/**
 * Starts the fast path's first attempt, hedged when due. `finish` gets the attempt whose result
 * decides the request: the first answer, or the last failure when every attempt failed (then
 * nothing reached the client, and the caller goes on to the balancer's retries from that leg).
 */
export const start = (
  engine: EngineState,
  request: Balancer.RunRequest,
  first: Leg,
  legOf: (started: Balancer.Started, ctx: RequestContext) => Leg,
  finish: (leg: Leg, result: Answer | Failed) => void
): Race => {
  const state = stateOf(engine)
  const race = new FastRace(engine, state, request, first, legOf, finish)
  // Not hedged (off, or the delay not learned yet): the plain fast path, with the latency
  // sampled while a delay is to be learned.
  const delay = state?.delay()
  // The hedge's timer on the shared deadline lists (`deadlines.ts`), not a Node timer per request.
  if (delay !== undefined) Deadlines.arm(race, delay)
  startUpstream(engine, first.ctx, first.started.key, (result) => race.onResult(first, result))
  return race
}

/**
 * The fast path's race as one object (its timer is the hedge's delay), with methods rather than
 * closures made per request (under tsx each named closure also costs an `Object.defineProperty`).
 */
class FastRace extends Deadlines.Deadline implements Race {
  private second: Leg | undefined = undefined
  private decided = false
  private noKey = false
  /** When the first attempt started (0: no latency is sampled, hedging is off). */
  private readonly t0: number
  constructor(
    private readonly engine: EngineState,
    private readonly state: State | undefined,
    private readonly request: Balancer.RunRequest,
    private readonly first: Leg,
    private readonly legOf: (started: Balancer.Started, ctx: RequestContext) => Leg,
    private readonly finish: (leg: Leg, result: Answer | Failed) => void
  ) {
    super()
    this.t0 = state === undefined ? 0 : performance.now()
  }

  onResult(leg: Leg, result: Answer | Failed): void {
    // A loser's late result, or a result after the client went away.
    if (this.decided || leg.settler.settled) return
    const { first, second, state } = this
    if (leg === first) Deadlines.disarm(this)
    if (second === undefined) {
      this.decided = true
      if (this.t0 !== 0 && result._tag === "Answer") state!.sample(performance.now() - this.t0)
      return this.finish(leg, result)
    }
    // A second leg exists only when hedging is on.
    const hedging = state!
    const other = leg === first ? second : first
    if (result._tag === "Answer") {
      this.decided = true
      if (leg === first) hedging.sample(performance.now() - this.t0)
      if (leg === second) hedging.count("won")
      else if (!other.settler.settled) hedging.count("lost")
      abortLeg(other)
      return this.finish(leg, result)
    }
    if (leg === second) hedging.count("failed")
    if (!other.settler.settled) {
      // The other attempt may still answer: this one's failure is reported now.
      leg.settler.unsafeFail(result.error)
      return
    }
    this.decided = true
    this.finish(leg, result)
  }

  /** The hedge delay passed. */
  expire(): void {
    const { first, state, engine } = this
    // Headers in (an answer on its way, maybe a long generation), already settled, or gone.
    if (state === undefined || this.decided || first.settler.settled || first.ctx.response !== undefined)
      return
    if (!state.inHand()) return state.count("capped")
    const exclude = new Set([first.started.key.id])
    const started = engine.built.balancer.unsafeStart({ ...this.request, exclude })
    if (started === undefined) {
      // Every other key is busy, cooling down or out: look again shortly (an account's window
      // reopens within a second), counting the request once.
      if (!this.noKey) state.count("no_key")
      this.noKey = true
      Deadlines.arm(this, RETRY_MS)
      return
    }
    state.take()
    const leg = this.legOf(started, {
      ...first.ctx,
      upstream: undefined,
      response: undefined,
      failed: undefined,
      attempt: undefined
    })
    this.second = leg
    startUpstream(engine, leg.ctx, started.key, (result) => this.onResult(leg, result))
  }

  abort(): void {
    Deadlines.disarm(this)
    const second = this.second
    if (!this.decided && second !== undefined && !second.settler.settled) this.state!.count("cancelled")
    this.decided = true
    abortLeg(this.first)
    if (second !== undefined) abortLeg(second)
  }

  settled(): boolean {
    return this.first.settler.settled && (this.second === undefined || this.second.settler.settled)
  }
}

/** The fiber path's hedge: see {@link watch}. */
export interface Watch {
  /** An attempt of the fiber starts on `key`: a hedge is armed for it (if none was made yet). */
  readonly attempt: (key: Key.Key) => void
  /**
   * The fiber's attempt has an answer: false when the hedge's answer was taken already (the
   * fiber's is then to be dropped); else the hedge under way, if any, is aborted.
   */
  readonly claim: () => boolean
  /** Aborts the hedge (its call, or its answer being sent): the client went away, or the deadline. */
  readonly abort: () => void
}

/**
 * Hedging for a request on the fiber path. `won` gets the hedge's answer when it comes before
 * any of the fiber's: the caller then interrupts the fiber and sends it. A hedge that fails is
 * reported and the fiber goes on. `accrue`: the request's share of hedges is not counted yet
 * (it did not start on the fast path).
 */
export const watch = (
  engine: EngineState,
  request: Balancer.RunRequest,
  ctx: RequestContext,
  accrue: boolean,
  legOf: (started: Balancer.Started, ctx: RequestContext) => Leg,
  won: (leg: Leg, answer: Answer) => void
): Watch | undefined => {
  const state = stateOf(engine)
  if (state === undefined) return undefined
  if (accrue) state.accrue()
  let timer: ReturnType<typeof setTimeout> | undefined
  let leg: Leg | undefined
  let done = false
  let noKey = false
  const fire = (key: Key.Key) => {
    // The attempt has its headers, ended, or another one is under way.
    if (done || leg !== undefined || ctx.attempt !== key.id || ctx.response !== undefined) return
    if (!state.inHand()) return state.count("capped")
    const started = engine.built.balancer.unsafeStart({ ...request, exclude: new Set([key.id]) })
    if (started === undefined) {
      if (!noKey) state.count("no_key")
      noKey = true
      timer = setTimeout(fire, RETRY_MS, key)
      return
    }
    state.take()
    const l = legOf(started, {
      ...ctx,
      upstream: undefined,
      response: undefined,
      failed: undefined,
      attempt: undefined
    })
    leg = l
    startUpstream(engine, l.ctx, started.key, (result) => {
      if (done || l.settler.settled) return
      if (result._tag === "Failed") {
        state.count("failed")
        return l.settler.unsafeFail(result.error)
      }
      done = true
      clearTimeout(timer)
      state.count("won")
      won(l, result)
    })
  }
  return {
    attempt: (key) => {
      if (done || leg !== undefined) return
      clearTimeout(timer)
      const delay = state.current()
      if (delay !== undefined) timer = setTimeout(fire, delay, key)
    },
    claim: () => {
      if (done) return false
      done = true
      clearTimeout(timer)
      if (leg !== undefined && !leg.settler.settled) {
        state.count("lost")
        abortLeg(leg)
      }
      return true
    },
    abort: () => {
      clearTimeout(timer)
      if (!done && leg !== undefined && !leg.settler.settled) state.count("cancelled")
      done = true
      if (leg !== undefined) abortLeg(leg)
    }
  }
}
