import type * as Key from "@or-balancer/core/Key"
import * as KeySelector from "@or-balancer/core/KeySelector"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
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

/** A 402 (or 403 key limit): the error, to empty the key (or its account) by. */
const exhaustedBy = (outcome: KeySelector.Outcome): UpstreamError.InsufficientCredits | undefined =>
  outcome._tag === "Failure" && outcome.error._tag === "InsufficientCredits" ? outcome.error : undefined

/**
 * Settles the reservation from the outcome (no verdict: nothing spent); a 402 empties the key (until
 * its next lookup, or its `limit_reset`) or takes its account out (`CreditLedger.Now.exhaust`).
 */
export const settle = (
  ledger: CreditLedger.Now,
  key: Key.Key,
  reservation: CreditLedger.Reservation,
  estimate: number,
  outcome: KeySelector.Outcome
): KeySelector.Reported => {
  const settled = reservation.settle(costOf(outcome, estimate))
  const error = exhaustedBy(outcome)
  return error !== undefined ? KeySelector.andReport(settled, () => ledger.exhaust(key, error)) : settled
}
