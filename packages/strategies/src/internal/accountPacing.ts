/**
 * The window model behind `AccountPacing`: what one rate window (an account's, or a key's own)
 * is known to admit, learned from its refusals, and the admissions counted against it. Plain
 * synchronous code over epoch millis, so the decorator decides with no fiber and tests drive it
 * with `TestClock`.
 *
 * OpenRouter's 429 says a window admits `limit` requests (`X-RateLimit-Limit`) and reopens at
 * `reset` (`X-RateLimit-Reset`); not how long a window is, nor when it began. Admission is a
 * sliding window: a call is admitted while fewer than `limit` were admitted in the last
 * `windowMs`. Every span of `windowMs` then holds at most `limit` calls, so an upstream window of
 * that length, wherever it begins (a fixed clock window, or one opened by the first call after the
 * previous ended), never overflows; local and upstream windows need no alignment, which drifts as
 * soon as traffic pauses.
 *
 * The length is learned at each refusal: the refused window held the `limit` accepted calls before
 * the refused one and ends at `reset`, so it is about `reset` minus the first of them. Without a limit header the limit is estimated: halved on a refusal, one
 * more after each window's worth of calls without one (AIMD).
 */

/** When nothing says how long a refusal lasts (no reset, no learned window). */
export const DEFAULT_WAIT_MS = 1_000

/** Admission times kept per window: limits above this are paced as this. */
export const CAPACITY = 4_096
/** Kept before a limit is known (a window grows to its limit, in powers of two). */
const INITIAL = 64
/** Intervals a spread window lets through at once (it still admits at most `limit` per length). */
export const BURST = 4

export interface Window {
  /** Requests a window admits: exact (a header said so) or estimated; unknown: no pacing yet. */
  limit: number | undefined
  exact: boolean
  /** The window's length, a lower bound learned from refusals. */
  windowMs: number | undefined
  /** The latest admission times, a ring (grown to hold a window's worth). */
  times: Float64Array
  /** Admissions so far: the sequence number of the latest. */
  admitted: number
  /** Refused until then (a 429's reset). */
  closedUntil: number
  /** The latest refusal's reset, if it said one (0: none). */
  lastReset: number
  refusals: number
  /** AIMD: `admitted` when the limit last changed, and when it did. */
  atChange: number
  changedAt: number
  /** The next free slot of the spread admissions (a virtual schedule: slots handed out move it on). */
  nextAt: number
}

export const make = (): Window => ({
  limit: undefined,
  exact: false,
  windowMs: undefined,
  times: new Float64Array(INITIAL),
  admitted: 0,
  closedUntil: 0,
  lastReset: 0,
  refusals: 0,
  atChange: 0,
  changedAt: 0,
  nextAt: 0
})

/** The admission time of sequence number `seq`, if still kept. */
const timeOf = (w: Window, seq: number): number | undefined => {
  const cap = w.times.length
  return seq < 1 || seq > w.admitted || w.admitted - seq >= cap
    ? undefined
    : Math.abs(w.times[(seq - 1) % cap]!)
}

/**
 * A refused call stays counted here (it left, and may be counted upstream) but is marked (its time
 * negated), so that learning counts only the calls the upstream accepted.
 */
const markRefused = (w: Window, seq: number) => {
  const cap = w.times.length
  if (seq >= 1 && seq <= w.admitted && w.admitted - seq < cap) {
    const i = (seq - 1) % cap
    w.times[i] = -Math.abs(w.times[i]!)
  }
}

/** The admission time of the `n`-th latest call before `seq` that was not refused, if still kept. */
const acceptedBefore = (w: Window, seq: number, n: number): number | undefined => {
  const cap = w.times.length
  let found = 0
  for (let s = seq - 1; s >= 1 && w.admitted - s < cap; s--) {
    const t = w.times[(s - 1) % cap]!
    if (t >= 0 && ++found === n) return t
  }
  return undefined
}

/** Grows the ring to hold `limit` + 1 admissions (up to `CAPACITY`), keeping what it holds. */
const fit = (w: Window, limit: number) => {
  const cap = w.times.length
  if (limit + 1 <= cap || cap >= CAPACITY) return
  let next = cap
  while (next < limit + 1 && next < CAPACITY) next *= 2
  const times = new Float64Array(next)
  for (let seq = Math.max(1, w.admitted - cap + 1); seq <= w.admitted; seq++)
    times[(seq - 1) % next] = w.times[(seq - 1) % cap]!
  w.times = times
}

/**
 * A window started by a call lasts a little longer here than learned: the upstream counted the
 * call a moment after it left, and a call let through early is spent on a closed window.
 */
export const slackOf = (windowMs: number): number => Math.min(250, Math.max(1, Math.ceil(windowMs * 0.02)))

/** The spacing of spread admissions, once the window's limit and length are known. */
export const intervalOf = (w: Window): number | undefined =>
  w.limit === undefined || w.windowMs === undefined
    ? undefined
    : (w.windowMs + slackOf(w.windowMs)) / Math.min(w.limit, CAPACITY)

/** The end of the refusal or of the full window (`limit` calls in the last length), whichever is later. */
const filledUntil = (w: Window, now: number): number | undefined => {
  if (now < w.closedUntil) return w.closedUntil
  const limit = w.limit
  const length = w.windowMs
  if (limit === undefined || length === undefined) return undefined
  // The `limit`-th latest admission: while it is within the window, one more would exceed it.
  const oldest = timeOf(w, w.admitted - Math.min(limit, w.times.length) + 1)
  if (oldest === undefined) return undefined
  const until = oldest + length + slackOf(length)
  return until > now ? until : undefined
}

/**
 * When the window admits again, or `undefined` if it admits at `now`. `spread`: the next slot of
 * the spread admissions counts too (a hedge, or a caller whose slot this is, does not wait for it).
 */
export const closedUntil = (w: Window, now: number, spread = true): number | undefined => {
  const filled = filledUntil(w, now)
  if (!spread) return filled
  const interval = intervalOf(w)
  const slot = interval === undefined ? 0 : w.nextAt - BURST * interval
  return slot > now ? Math.max(slot, filled ?? 0) : filled
}

/** The slot's admission is counted: the next slot moves on by one interval. */
const take = (w: Window, at: number) => {
  const interval = intervalOf(w)
  if (interval !== undefined) w.nextAt = Math.max(w.nextAt, at) + interval
}

/**
 * Hands the caller the slot at `at` (the window's `closedUntil`), admitted then with `reserved`:
 * the callers after it get the slots after it, so each waits its turn and wakes once.
 */
export const reserve = (w: Window, at: number): void => take(w, at)

/**
 * Counts one admission at `now`, answering its sequence number; `undefined` (counting nothing) when
 * closed. `spread`: it waits for its slot (see `closedUntil`); `reserved`: its slot was handed out
 * by `reserve` (not counted twice).
 */
export const admit = (w: Window, now: number, spread = true, reserved = false): number | undefined => {
  if (closedUntil(w, now, spread && !reserved) !== undefined) return undefined
  if (w.limit !== undefined) fit(w, w.limit)
  w.times[w.admitted % w.times.length] = now
  w.admitted++
  if (!reserved) take(w, now)
  if (!w.exact && w.limit !== undefined && w.windowMs !== undefined) {
    // Additive increase: a window's worth of calls, over at least a window, without a refusal.
    if (w.admitted - w.atChange > w.limit && now - w.changedAt >= w.windowMs) {
      w.limit++
      w.atChange = w.admitted
      w.changedAt = now
    }
  }
  return w.admitted
}

/** Calls admitted in the window ending at `now` (for status). */
export const inWindow = (w: Window, now: number): number => {
  if (w.windowMs === undefined) return 0
  let n = 0
  for (let seq = w.admitted; seq > 0; seq--) {
    const t = timeOf(w, seq)
    if (t === undefined || t <= now - w.windowMs) break
    n++
  }
  return n
}

/**
 * A refusal at `now` of the call admitted as `seq`: the window is closed until `resetAt` (else for
 * its learned length, else `DEFAULT_WAIT_MS`); its limit is `limit` when the answer said it, else
 * halved; its length is at least `resetAt` minus the first of the `limit` calls before the refused
 * one. The refusals of one closed window (every call in flight into it gets one) teach once, and
 * so does a refusal whose reset has already passed (answered late: it would reopen nothing).
 */
export const refuse = (
  w: Window,
  now: number,
  resetAt: number | undefined,
  limit: number | undefined,
  seq: number
): void => {
  const known = resetAt !== undefined ? resetAt <= w.closedUntil || resetAt <= now : now < w.closedUntil
  if (limit !== undefined) {
    w.limit = limit
    w.exact = true
  }
  markRefused(w, seq)
  if (known) return
  w.refusals++
  if (limit === undefined) {
    // What was admitted since the last change is an upper bound on what a window admits.
    const basis = w.limit ?? Math.max(1, seq - w.atChange)
    w.limit = Math.max(1, Math.floor(basis / 2))
    w.exact = false
  }
  w.atChange = w.admitted
  w.changedAt = now
  if (resetAt !== undefined) {
    // The refused window held `limit` accepted calls and ends at the reset: it began no later than
    // the first of them. The latest estimate replaces the last (a longer one would only ever grow,
    // and every millisecond too long is throughput lost for good).
    const first = acceptedBefore(w, seq, w.limit!) ?? timeOf(w, seq)
    if (first !== undefined) {
      // Windows follow one another: this one began after the previous refusal's reset, so it is
      // no longer than the time between the two resets (a call counted here that the upstream did
      // not count, a 401 say, would otherwise stretch the estimate).
      const most = w.lastReset > 0 ? resetAt - w.lastReset : Infinity
      const least = resetAt - (timeOf(w, seq) ?? first)
      w.windowMs = Math.max(1, least, Math.min(resetAt - first, most))
    }
    w.lastReset = resetAt
  }
  w.closedUntil = resetAt ?? now + (w.windowMs ?? DEFAULT_WAIT_MS)
}

/**
 * An answer to the call admitted as `seq` said its window (`X-RateLimit-*` on a success): the
 * limit is known exactly; a call that opened its window (all but it left) says the window's length
 * is at most its reset minus the call's admission (the upstream counted the call a moment after it
 * left: an estimate a little long, never short); none left closes the window until its reset. So
 * pacing starts before the first 429.
 */
export const observe = (
  w: Window,
  now: number,
  limit: number,
  remaining: number | undefined,
  resetAt: number | undefined,
  seq: number
): void => {
  w.limit = limit
  w.exact = true
  if (resetAt === undefined || resetAt <= now) return
  const at = timeOf(w, seq)
  if (remaining === limit - 1 && at !== undefined && resetAt > at) {
    w.windowMs = resetAt - at
    w.lastReset = resetAt
  }
  if (remaining === 0 && resetAt > w.closedUntil) w.closedUntil = resetAt
}

/** A window that may refuse: a limit known or a refusal seen. */
const paces = (w: Window): boolean => w.limit !== undefined || w.closedUntil > 0

/** Every window by its id (`account:<name>` or `key:<id>`), made on first use. */
export class Windows {
  readonly byId = new Map<string, Window>()
  /** Windows that may refuse (a limit known or a refusal seen): none, and nothing is gated. */
  paced = 0

  get(id: string): Window {
    let w = this.byId.get(id)
    if (w === undefined) {
      w = make()
      this.byId.set(id, w)
    }
    return w
  }

  refuse(w: Window, now: number, resetAt: number | undefined, limit: number | undefined, seq: number): void {
    const before = paces(w)
    refuse(w, now, resetAt, limit, seq)
    if (!before && paces(w)) this.paced++
  }

  observe(
    w: Window,
    now: number,
    limit: number,
    remaining: number | undefined,
    resetAt: number | undefined,
    seq: number
  ): void {
    const before = paces(w)
    observe(w, now, limit, remaining, resetAt, seq)
    if (!before) this.paced++
  }
}
