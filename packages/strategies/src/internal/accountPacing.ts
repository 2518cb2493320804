/**
 * The window model behind `AccountPacing`: what one rate window (an account's, or a key's own)
 * is known to admit, learned from its refusals, and the admissions counted against it. Plain
 * synchronous code over epoch millis, so the decorator decides with no fiber and tests drive it
 * with `TestClock`.
 *
 * A window is modelled the way OpenRouter's 429 describes it: `limit` requests
 * (`X-RateLimit-Limit`) until `reset` (`X-RateLimit-Reset`). Its length is learned as the reset
 * minus the first admission of the window the refusal closed. Without a limit header the limit is
 * estimated: halved on each refusal, one more after each window that filled without one (AIMD).
 */

/** When nothing says how long a refusal lasts (no reset, no learned window). */
export const DEFAULT_WAIT_MS = 1_000

export interface Window {
  /** Requests a window admits: exact (a header said so) or estimated; unknown: no pacing yet. */
  limit: number | undefined
  exact: boolean
  /** The window's length, once learned from a refusal. */
  windowMs: number | undefined
  /** The current window's first admission and its expected end (unknown until `windowMs` is). */
  start: number | undefined
  end: number | undefined
  /** The previous window's first admission: a window rolled too early is measured from it. */
  previousStart: number | undefined
  /** Whether the current window began by a local roll (a guess) rather than after a refusal's reset. */
  rolled: boolean
  /**
   * Whether the current window is known to have begun with its first admission: after a refusal's
   * reset, or by a roll once the length is known. Only such a window teaches the length (the very
   * first one may have begun long before a refusal comes, if its limit was not reached at once).
   */
  aligned: boolean
  count: number
  /** Refused until then (a 429's reset). */
  closedUntil: number
  /** Refusals learned from, for status. */
  refusals: number
}

const fresh = (): Window => ({
  limit: undefined,
  exact: false,
  windowMs: undefined,
  start: undefined,
  end: undefined,
  previousStart: undefined,
  rolled: false,
  aligned: false,
  count: 0,
  closedUntil: 0,
  refusals: 0
})

/**
 * A locally rolled window starts a little after the learned end: the upstream's window opened when
 * the first call reached it, a moment after it left, and a roll before its end spends a burst of
 * calls on a closed window.
 */
export const slackOf = (windowMs: number): number => Math.min(250, Math.max(1, Math.ceil(windowMs * 0.02)))

/** Whether `w` is over at `now`, so the next admission opens a new one. */
const isOver = (w: Window, now: number) => w.start === undefined || (w.end !== undefined && now >= w.end)

/**
 * When the window admits again, or `undefined` if it admits at `now`. A full window whose end is
 * not known yet admits: the upstream's refusal will say when it ends (and so how long it is).
 */
export const closedUntil = (w: Window, now: number): number | undefined => {
  if (now < w.closedUntil) return w.closedUntil
  if (w.limit === undefined || isOver(w, now)) return undefined
  return w.count >= w.limit && w.end !== undefined ? w.end : undefined
}

/** Counts one admission at `now`; `false` (counting nothing) when the window is closed. */
export const admit = (w: Window, now: number): boolean => {
  if (now < w.closedUntil) return false
  if (isOver(w, now)) {
    // A window that filled without a refusal: an estimate may grow by one (additive increase).
    if (w.start !== undefined && !w.exact && w.limit !== undefined && w.count >= w.limit) w.limit++
    w.rolled = w.start !== undefined
    w.aligned = w.rolled || w.refusals > 0
    w.previousStart = w.start
    w.start = now
    w.end = w.windowMs === undefined ? undefined : now + w.windowMs + slackOf(w.windowMs)
    w.count = 0
  } else if (w.limit !== undefined && w.count >= w.limit && w.end !== undefined) return false
  w.count++
  return true
}

/**
 * A refusal at `now`: the window is closed until `resetAt` (else for its learned length, else
 * `DEFAULT_WAIT_MS`), its limit is `limit` when the answer said it, else halved. The refusals of
 * one closed window (every call in flight into it gets one) teach once.
 */
export const refuse = (
  w: Window,
  now: number,
  resetAt: number | undefined,
  limit: number | undefined
): void => {
  if (resetAt !== undefined ? resetAt <= w.closedUntil : now < w.closedUntil) {
    if (limit !== undefined && !w.exact) {
      w.limit = limit
      w.exact = true
    }
    return
  }
  w.refusals++
  if (limit !== undefined) {
    w.limit = limit
    w.exact = true
  } else {
    // What this window took is an upper bound on what it admits.
    const basis = w.limit ?? Math.max(1, w.count)
    w.limit = Math.max(1, Math.floor(basis / 2))
    w.exact = false
  }
  if (resetAt !== undefined && w.start !== undefined && w.aligned) w.windowMs = lengthOf(w, resetAt)
  w.closedUntil = resetAt ?? now + (w.windowMs ?? DEFAULT_WAIT_MS)
  w.start = undefined
  w.end = undefined
  w.count = 0
}

// The window the refusal closed began at this window's first admission; unless this window was
// opened by a local roll and the reset falls soon after it: then the upstream's previous window
// was still running (the learned length was short), and it began at the previous first admission.
const lengthOf = (w: Window, resetAt: number): number => {
  const start = w.start!
  const own = resetAt - start
  if (w.rolled && w.previousStart !== undefined && w.windowMs !== undefined && own < w.windowMs / 2)
    return Math.max(1, resetAt - w.previousStart)
  return Math.max(1, own)
}

/** Every window by its id (`account:<name>` or `key:<id>`), made on first use. */
export class Windows {
  readonly byId = new Map<string, Window>()
  /** Windows that may refuse (a limit known or a refusal seen): none, and nothing is gated. */
  paced = 0

  get(id: string): Window {
    let w = this.byId.get(id)
    if (w === undefined) {
      w = fresh()
      this.byId.set(id, w)
    }
    return w
  }

  refuse(id: string, now: number, resetAt: number | undefined, limit: number | undefined): void {
    const w = this.get(id)
    const before = w.limit !== undefined || w.closedUntil > 0
    refuse(w, now, resetAt, limit)
    if (!before) this.paced++
  }
}
