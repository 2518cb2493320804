import type * as Key from "@or-balancer/core/Key"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import type * as CreditLedger from "../CreditLedger.js"

/** A gate refusing keys with less than `min` USD of live credit, by the balances read for one selection. */
export const creditGate =
  (balances: CreditLedger.Balances, min: number): KeySelector.Gate =>
  (k) => {
    const a = balances.available(k)
    if (a === undefined) {
      // The lookup failed: the key may come back when it is retried, so say when (the balancer
      // waits for that, within its deadline, rather than failing the request at once).
      const at = balances.refreshAt(k)
      return at > 0 ? { reason: "credit", until: at } : NEVER_LOOKED_UP
    }
    if (a !== null && a < min) return { reason: "credit", until: balances.refreshAt(k) }
    return undefined
  }

const NEVER_LOOKED_UP: KeySelector.Ineligible = { reason: "credit", until: undefined }

/** What an outcome spent: its cost (the estimate when it names none) on success, else nothing. */
const costOf = (outcome: KeySelector.Outcome, estimate: number): number =>
  outcome._tag === "Success" ? (outcome.cost ?? estimate) : 0

/** A 402: the key is empty until its next lookup. */
const exhausts = (outcome: KeySelector.Outcome): boolean =>
  outcome._tag === "Failure" && outcome.error._tag === "InsufficientCredits"

/** Settles the reservation from the outcome (no verdict: nothing spent); a 402 empties the key until its next lookup. */
export const settle = (
  ledger: CreditLedger.Service,
  key: Key.Key,
  reservation: CreditLedger.Reservation,
  estimate: number,
  outcome: KeySelector.Outcome
): Effect.Effect<void> => {
  const settled = reservation.settle(costOf(outcome, estimate))
  return exhausts(outcome) ? Effect.zipRight(settled, ledger.exhaust(key)) : settled
}

/** {@link settle}, synchronously. */
export const unsafeSettle = (
  ledger: CreditLedger.Unsafe,
  key: Key.Key,
  reservation: CreditLedger.UnsafeReservation,
  estimate: number,
  outcome: KeySelector.Outcome
): void => {
  reservation.unsafeSettle(costOf(outcome, estimate))
  if (exhausts(outcome)) ledger.exhaust(key)
}

/** A report that settles the reservation, then reports to `inner`. */
export const settleReport =
  (
    ledger: CreditLedger.Service,
    key: Key.Key,
    reservation: CreditLedger.Reservation,
    estimate: number,
    inner: KeySelector.Lease["report"]
  ): KeySelector.Lease["report"] =>
  (outcome) =>
    Effect.zipRight(settle(ledger, key, reservation, estimate, outcome), inner(outcome))
