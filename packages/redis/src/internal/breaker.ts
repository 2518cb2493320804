/**
 * A circuit breaker as a synchronous state machine, driven by the caller's clock readings so a
 * `TestClock` controls it. Closed: calls go through, consecutive failures are counted. Open: calls
 * fail fast until `openForMs` has passed. Half-open: one trial call goes through; its outcome
 * closes or re-opens the breaker.
 */

export type BreakerState = "closed" | "open" | "half-open"

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  readonly failures: number
  /** How long it stays open before one trial call is let through. */
  readonly openForMs: number
}

export class Breaker {
  private failures = 0
  private openUntil = 0
  private trialInFlight = false
  private opened = false

  constructor(readonly options: BreakerOptions) {}

  state(now: number): BreakerState {
    if (!this.opened) return "closed"
    return now < this.openUntil || this.trialInFlight ? "open" : "half-open"
  }

  /** Whether a call may be sent now; a half-open breaker admits exactly one trial at a time. */
  admit(now: number): boolean {
    if (!this.opened) return true
    if (now < this.openUntil || this.trialInFlight) return false
    this.trialInFlight = true
    return true
  }

  success(): void {
    this.failures = 0
    this.opened = false
    this.trialInFlight = false
  }

  failure(now: number): void {
    this.trialInFlight = false
    this.failures++
    if (this.opened || this.failures >= this.options.failures) {
      this.opened = true
      this.openUntil = now + this.options.openForMs
    }
  }
}
