// Keys closed by their first 401, per Balancer, whatever the strategy stack: a revoked key must
// not take a new attempt from every request in flight (issue 14: a revoked key took 2,161 more
// attempts in one overload round while a health-aware status showed it ejected). Only attempts
// already started when the 401 came may still reach it.
//
// A key is closed as the object the pool held: a pool change or reload that brings the key in
// again (a new `Key` value) opens it; nothing else does.
import * as Effect from "effect/Effect"
import type * as Key from "../Key.js"
import * as KeySelector from "../KeySelector.js"
import type * as Monitor from "../Monitor.js"

const CLOSED: KeySelector.Ineligible = { reason: "revoked" }
const CANCELLED = KeySelector.cancelled()

/** A strategy that keeps answering closed keys (it ignores the gate) is refused after this many. */
export const MAX_GIVEN_BACK = 4
export const CLOSED_ONLY = new KeySelector.NoKeyAvailable({
  reason: "revoked",
  message: "the selector keeps choosing keys closed by a 401"
})

export class ClosedKeys {
  private readonly closed = new Map<string, Key.Key>()
  constructor(private readonly enabled: boolean) {}

  /** Notes an attempt's outcome: a 401 closes its key. */
  note(key: Key.Key, outcome: KeySelector.Outcome): void {
    if (this.enabled && outcome._tag === "Failure" && outcome.error._tag === "Unauthorized")
      this.closed.set(key.id, key)
  }

  /** The monitor's `finished`, noting each outcome first (for the Effect loop's attempts). */
  watching(monitor: Pick<Monitor.Service, "finished">): Pick<Monitor.Service, "finished"> {
    return {
      finished: (key, outcome) => {
        this.note(key, outcome)
        return monitor.finished(key, outcome)
      }
    }
  }

  /** `finished`, noting each outcome first. */
  noting(
    finished: (key: Key.Key, outcome: KeySelector.Outcome) => void
  ): (key: Key.Key, outcome: KeySelector.Outcome) => void {
    return (key, outcome) => {
      this.note(key, outcome)
      finished(key, outcome)
    }
  }

  /** Gives back, with no verdict, a lease decided on a key closed since. */
  giveBack(lease: KeySelector.Lease): undefined {
    const reported = lease.unsafeReport(CANCELLED)
    if (KeySelector.isPending(reported)) Effect.runFork(reported)
    return undefined
  }

  isClosed(key: Key.Key): boolean {
    return this.closed.size > 0 && this.closed.get(key.id) === key
  }

  /** `gate`, also refusing closed keys (the same gate while none is closed: the hot path's case). */
  gate(gate: KeySelector.Gate | undefined): KeySelector.Gate | undefined {
    if (this.closed.size === 0) return gate
    return gate === undefined
      ? (k) => (this.isClosed(k) ? CLOSED : undefined)
      : (k) => (this.isClosed(k) ? CLOSED : gate(k))
  }

  /** The ids of the keys closed now. */
  ids(): ReadonlyArray<string> {
    return [...this.closed.keys()]
  }
}
