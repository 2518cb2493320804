/**
 * Account pacing (a decorator): admits to each account no more requests than its rate window is
 * known to admit, so calls are not spent on a window known to be closed (issue 14).
 *
 * OpenRouter limits requests per account (more keys do not add capacity) and refuses the excess
 * with a 429 carrying `X-RateLimit-Limit` (what a window admits) and `X-RateLimit-Reset` (when it
 * reopens). `Protocol` reads them into `RateLimited { scope: "account", limit, retryAfter }`; this
 * decorator learns each account's window from those reports: the limit from the header, the
 * window's length as at least the reset minus the first of the `limit` calls before the refused
 * one. Admission is a sliding window (at most `limit` calls in any span of that length), so it
 * needs no alignment with the upstream's windows. Without a limit header (a
 * provider's 429, scope `key`: then the key's own window) the limit is estimated: halved on a
 * refusal, one more after each window that filled without one (AIMD).
 *
 * A key is admitted only while its account's window (and its own, once it has one) admits:
 * - a closed window gates its keys away, so the inner selector passes to another account's keys;
 * - when every candidate is held only by closed windows, the decision is a `Wait` until the first
 *   reopens (within the request's deadline; past it, the refusal, naming the cooldown and when);
 * - each lease counts one admission against its windows (a lease reported `Cancelled` stays
 *   counted: the call may have reached the upstream).
 *
 * A success carrying its window (`KeySelector.success(latency, cost, window)`, from `X-RateLimit-*`
 * on the answer: `Protocol.rateLimitOf`) teaches it too: its limit, its length from a call that
 * opened it, and none left closes it until its reset.
 *
 * Admissions are spread over each window (one per length ÷ limit, a few at once; `spread: false`
 * admits a window's whole limit at once): a window filled in a burst leaves every later caller
 * waiting for the rest of it. A caller that must wait takes the window's next slot, so waiters are
 * served in turn and each wakes once; a hedge skips the spacing (never the limit).
 *
 * Until a window has refused once or said its limit, nothing is paced. Windows are per process,
 * unless a `PacingShare` (a fleet on Redis) is provided: then what one replica learns paces all,
 * each admitting the limit ÷ the live replicas.
 *
 * Place it outermost (above `HealthAware`), so it counts exactly the leases handed out.
 *
 * @since 0.4.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as W from "./internal/accountPacing.js"
import * as PacingFleet from "./internal/pacingFleet.js"
import { thenFor, withKeys } from "./internal/common.js"

/**
 * @since 0.4.0
 * @category Models
 */
export interface Options {
  /** Longest a refusal closes a window (a reset a day ahead is tried again after it). Default 5 minutes. */
  readonly maxWait?: Duration.DurationInput | undefined
  /**
   * Spread each window's admissions over its length (one per length ÷ limit, a few at once),
   * waiting callers served in turn. Default true; false admits a window's whole limit at once
   * (the window then fills in a burst and later callers wait for the rest of it).
   */
  readonly spread?: boolean | undefined
}

/**
 * What is known of one window.
 *
 * @since 0.4.0
 * @category Models
 */
export interface WindowStatus {
  /** `account:<name>`, or `key:<id>` for a key's own window. */
  readonly id: string
  readonly limit: number | undefined
  /** The limit came from `X-RateLimit-Limit` (else it is an estimate). */
  readonly exact: boolean
  readonly windowMs: number | undefined
  /** Admissions counted in the current window. */
  readonly admitted: number
  /** Epoch millis until which it admits nothing, if closed. */
  readonly closedUntil: number | undefined
  readonly refusals: number
  /** With a fleet: the whole fleet's limit (`limit` is this replica's share of it) and its live replicas. */
  readonly fleet?: { readonly limit: number; readonly replicas: number } | undefined
}

/**
 * A pacing selector, with a read of its windows.
 *
 * @since 0.4.0
 * @category Models
 */
export interface Pacing extends KeySelector.Service {
  readonly windows: Effect.Effect<ReadonlyArray<WindowStatus>>
}

interface KeyWindows {
  readonly account: W.Window | undefined
  readonly own: W.Window
}

const CANCELLED = KeySelector.cancelled()
const INELIGIBLE: KeySelector.Ineligible = { reason: "ineligible" }

/**
 * @since 0.4.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Pacing, never, KeySelector.KeySelector | KeyPool.KeyPool> =>
  Effect.gen(function* () {
    const inner = yield* KeySelector.KeySelector
    const pool = yield* KeyPool.KeyPool
    const clock = yield* Effect.clock
    const maxWait = Duration.toMillis(options.maxWait ?? Duration.minutes(5))
    const spreading = options.spread !== false
    // Whether a request waits for the next slot of spread admissions (a hedge does not).
    const spreads = (request: KeySelector.SelectRequest) => spreading && request.hedge !== true
    const windows = new W.Windows()
    // With a fleet (`PacingShare`): windows learned anywhere pace every replica.
    const fleet = yield* PacingFleet.make(windows)
    // Keys are stable objects in the pool: their windows are looked up once.
    const byKey = new WeakMap<Key.Key, KeyWindows>()
    const windowsOf = (key: Key.Key): KeyWindows => {
      let kw = byKey.get(key)
      if (kw === undefined) {
        kw = {
          account: key.account === undefined ? undefined : windows.get(`account:${key.account}`),
          own: windows.get(`key:${key.id}`)
        }
        byKey.set(key, kw)
      }
      return kw
    }
    // The window whose slots a key's calls take: its account's, else its own.
    const pacedBy = (kw: KeyWindows): W.Window => kw.account ?? kw.own
    // `spread`: wait for the next slot of spread admissions (not for a hedge); `reserved`: the
    // window whose slot the caller holds (see `reserve`).
    const untilFor = (
      key: Key.Key,
      now: number,
      spread: boolean,
      reserved?: W.Window
    ): number | undefined => {
      const kw = windowsOf(key)
      const own = W.closedUntil(kw.own, now, spread && kw.own !== reserved)
      const account =
        kw.account === undefined
          ? undefined
          : W.closedUntil(kw.account, now, spread && kw.account !== reserved)
      return own === undefined ? account : account === undefined ? own : Math.max(own, account)
    }
    const gateAt =
      (now: number, spread: boolean): KeySelector.Gate =>
      (key) => {
        const until = untilFor(key, now, spread)
        return until === undefined ? undefined : { reason: "cooldown", until }
      }

    // A refusal teaches the window it names (the account's for OpenRouter's own 429, else the
    // key's), told which call it refused (its admission's sequence number in each window).
    const learn = (key: Key.Key, error: UpstreamError.RateLimited, accountSeq: number, ownSeq: number) => {
      const now = clock.unsafeCurrentTimeMillis()
      const wait = error.retryAfter === undefined ? undefined : Duration.toMillis(error.retryAfter)
      // The reset itself when the answer said it (a wait drifts by however late the report is).
      const reset = error.resetAt ?? (wait === undefined ? undefined : now + wait)
      const resetAt = reset === undefined ? undefined : Math.min(now + maxWait, reset)
      const kw = windowsOf(key)
      if (error.scope === "account" && kw.account !== undefined) {
        windows.refuse(kw.account, now, resetAt, error.limit, accountSeq)
        fleet?.learned(`account:${key.account}`, kw.account, error.limit)
      } else {
        windows.refuse(kw.own, now, resetAt, error.limit, ownSeq)
        fleet?.learned(`key:${key.id}`, kw.own, error.limit)
      }
    }

    // A success that said its window (`X-RateLimit-*`: OpenRouter says them only on 429s, a proxy
    // in front of it may on successes) teaches the account's window (the key's own, for a key with
    // no account) before any 429.
    const observed = (key: Key.Key, window: UpstreamError.RateWindow, accountSeq: number, ownSeq: number) => {
      const kw = windowsOf(key)
      const now = clock.unsafeCurrentTimeMillis()
      const [id, w, seq] =
        kw.account !== undefined
          ? [`account:${key.account}`, kw.account, accountSeq]
          : [`key:${key.id}`, kw.own, ownSeq]
      const [limit, length] = [w.limit, w.windowMs]
      windows.observe(w, now, window.limit, window.remaining, window.resetAt, seq)
      // Shared with the fleet when it taught something new (not on every success).
      if (w.limit !== limit || w.windowMs !== length) fleet?.learned(id, w, window.limit)
    }

    // Admits the key's call in its windows and wraps the lease to learn from its answer; `undefined`
    // when a window is closed (checked first: nothing is counted then).
    const admitted = (
      lease: KeySelector.Lease,
      now: number,
      spread: boolean,
      reserved?: W.Window
    ): KeySelector.Lease | undefined => {
      const key = lease.key
      if (untilFor(key, now, spread, reserved) !== undefined) return undefined
      const kw = windowsOf(key)
      const accountSeq =
        kw.account === undefined ? 0 : W.admit(kw.account, now, spread, kw.account === reserved)!
      const ownSeq = W.admit(kw.own, now, spread, kw.own === reserved)!
      return KeySelector.lease(key, (outcome) => {
        if (outcome._tag === "Failure" && outcome.error._tag === "RateLimited")
          learn(key, outcome.error, accountSeq, ownSeq)
        else if (outcome._tag === "Success" && outcome.window !== undefined)
          observed(key, outcome.window, accountSeq, ownSeq)
        return lease.unsafeReport(outcome)
      })
    }

    // The candidate whose windows reopen first, and when (`undefined`: none is held by a window).
    const firstToOpen = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      now: number,
      spread: boolean
    ): readonly [Key.Key, number] | undefined => {
      let first: readonly [Key.Key, number] | undefined
      for (const k of keys) {
        if (!KeySelector.isCandidate(request, k)) continue
        const until = untilFor(k, now, spread)
        if (until !== undefined && (first === undefined || until < first[1])) first = [k, until]
      }
      return first
    }

    // Every candidate held only by a closed window: wait for the first to reopen, if in time. The
    // waiting caller takes that window's next slot (`reserve`) when its wait starts (a decision
    // that is never run holds none), so callers are served in turn, each woken once, rather than
    // all woken for every slot. A hedge takes none (it never waits: `Balancer.unsafeStart`).
    const waitOrRefuse = (
      request: KeySelector.SelectRequest,
      refusal: KeySelector.NoKeyAvailable
    ): KeySelector.Decision => {
      const deadline = request.deadline
      if (deadline === undefined || windows.paced === 0) return refusal
      const spread = spreads(request)
      return withKeys(pool, (keys) => {
        const first = firstToOpen(request, keys, clock.unsafeCurrentTimeMillis(), spread)
        if (first === undefined || first[1] > deadline) return refusal
        const wait = Effect.suspend(() => {
          const now = clock.unsafeCurrentTimeMillis()
          const next = firstToOpen(request, keys, now, spread)
          if (next === undefined) return Effect.succeed(undefined)
          const slot = spread ? pacedBy(windowsOf(next[0])) : undefined
          if (slot !== undefined) W.reserve(slot, next[1])
          return Effect.as(Effect.interruptible(Effect.sleep(Duration.millis(next[1] - now))), slot)
        })
        return KeySelector.waitFor(wait, (slot) =>
          slot === undefined ? decide(request) : decideIn(request, slot)
        )
      })
    }

    // The caller holds a slot of `slot`: a key paced by it, else (its keys went away meanwhile, or
    // the window was refused and closed) the ordinary decision.
    const decideIn = (request: KeySelector.SelectRequest, slot: W.Window): KeySelector.Decision => {
      const now = clock.unsafeCurrentTimeMillis()
      const gate: KeySelector.Gate = (key) => {
        if (pacedBy(windowsOf(key)) !== slot) return INELIGIBLE
        const until = untilFor(key, now, true, slot)
        return until === undefined ? undefined : { reason: "cooldown", until }
      }
      return thenFor(inner.decide(KeySelector.withGate(request, gate)), request, (req, picked) => {
        if (KeySelector.isNoKeyAvailable(picked)) return decide(req)
        return (
          admitted(picked, clock.unsafeCurrentTimeMillis(), true, slot) ??
          KeySelector.giveBack(picked, CANCELLED, () => decide(req))
        )
      })
    }

    const afterInner = (
      request: KeySelector.SelectRequest,
      picked: KeySelector.Lease | KeySelector.NoKeyAvailable
    ): KeySelector.Decision => {
      if (KeySelector.isNoKeyAvailable(picked)) return waitOrRefuse(request, picked)
      // The inner selector may have waited: its key's window may have closed meanwhile.
      return (
        admitted(picked, clock.unsafeCurrentTimeMillis(), spreads(request)) ??
        KeySelector.giveBack(picked, CANCELLED, () => decide(request))
      )
    }

    const decide = (request: KeySelector.SelectRequest): KeySelector.Decision =>
      thenFor(
        inner.decide(
          // No window has refused yet: nothing to gate (admissions are still counted, to learn from).
          windows.paced === 0
            ? request
            : KeySelector.withGate(request, gateAt(clock.unsafeCurrentTimeMillis(), spreads(request)))
        ),
        request,
        afterInner
      )

    const status: Effect.Effect<ReadonlyArray<WindowStatus>> = Effect.sync(() => {
      const now = clock.unsafeCurrentTimeMillis()
      const out: Array<WindowStatus> = []
      for (const [id, w] of windows.byId) {
        if (w.limit === undefined && w.refusals === 0) continue
        out.push({
          id,
          limit: w.limit,
          exact: w.exact,
          windowMs: w.windowMs,
          admitted: W.inWindow(w, now),
          closedUntil: W.closedUntil(w, now, false),
          refusals: w.refusals,
          fleet: fleet?.fleetLimit(id)
        })
      }
      return out
    })
    return { ...KeySelector.fromDecide(decide), windows: status }
  })

/**
 * Requires the inner `KeySelector`.
 *
 * @since 0.4.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<KeySelector.KeySelector, never, KeySelector.KeySelector | KeyPool.KeyPool> =>
  Layer.effect(KeySelector.KeySelector, make(options))
