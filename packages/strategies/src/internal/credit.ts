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

/** Settles the reservation from the outcome (no verdict: nothing spent); a 402 empties the key until its next lookup. */
export const settle = (
  ledger: CreditLedger.Service,
  key: Key.Key,
  reservation: CreditLedger.Reservation,
  estimate: number,
  outcome: KeySelector.Outcome
): Effect.Effect<void> =>
  outcome._tag === "Success"
    ? reservation.settle(outcome.cost ?? estimate)
    : outcome._tag === "Failure" && outcome.error._tag === "InsufficientCredits"
      ? Effect.zipRight(reservation.settle(0), ledger.exhaust(key))
      : reservation.settle(0)

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
