/**
 * Per-request deadlines on one timer per duration instead of a `setTimeout` (and a close listener
 * to clear it) per request. Every request of an engine has the same `deadlines.requestMs`, so
 * entries of one duration are added in the order they expire: a list per duration, appended at
 * its tail, unlinked in O(1) when the request ends, and one Node timer armed for its head. The
 * same idea as Node's own timer lists, without a `Timeout` object per request.
 */

/** A request's place in a deadline list; `expire` runs when its deadline passes. */
export abstract class Deadline {
  /** Clock millis (`Date.now`, as Node's timers) at which it expires; set by {@link arm}. */
  deadlineAt = 0
  deadlinePrev: Deadline | undefined = undefined
  deadlineNext: Deadline | undefined = undefined
  deadlineList: List | undefined = undefined
  abstract expire(): void
}

class List {
  head: Deadline | undefined = undefined
  tail: Deadline | undefined = undefined
  timer: ReturnType<typeof setTimeout> | undefined = undefined
  /** When the armed timer fires. */
  timerAt = 0
  constructor(readonly ms: number) {}

  readonly fire = (): void => {
    this.timer = undefined
    const now = Date.now()
    let d = this.head
    while (d !== undefined && d.deadlineAt <= now) {
      disarm(d)
      d.expire()
      d = this.head
    }
    if (d !== undefined) this.schedule(d.deadlineAt, now)
    else lists.delete(this.ms)
  }

  schedule(at: number, now: number): void {
    this.timerAt = at
    this.timer = setTimeout(this.fire, Math.max(1, at - now))
    // A deadline alone keeps no process alive (the server does while it listens).
    this.timer.unref()
  }
}

const lists = new Map<number, List>()

/** Expires `d` in `ms` (unless {@link disarm}ed first). */
export const arm = (d: Deadline, ms: number): void => {
  let list = lists.get(ms)
  if (list === undefined) {
    list = new List(ms)
    lists.set(ms, list)
  }
  const now = Date.now()
  d.deadlineAt = now + ms
  d.deadlineList = list
  d.deadlinePrev = list.tail
  d.deadlineNext = undefined
  if (list.tail === undefined) list.head = d
  else list.tail.deadlineNext = d
  list.tail = d
  // The timer is left armed for an earlier head that was removed: it fires, finds nothing due
  // and re-arms for the new head. Only a list with no timer needs one now.
  if (list.timer === undefined) list.schedule(d.deadlineAt, now)
}

/** Takes `d` off its list (a no-op if it is on none). */
export const disarm = (d: Deadline): void => {
  const list = d.deadlineList
  if (list === undefined) return
  const { deadlinePrev: prev, deadlineNext: next } = d
  if (prev === undefined) list.head = next
  else prev.deadlineNext = next
  if (next === undefined) list.tail = prev
  else next.deadlinePrev = prev
  d.deadlinePrev = undefined
  d.deadlineNext = undefined
  d.deadlineList = undefined
}
