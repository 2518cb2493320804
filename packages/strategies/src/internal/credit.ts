import type * as Key from "@or-balancer/core/Key"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import type * as CreditLedger from "../CreditLedger.js"

/** Reads the live credit of every candidate, in pool order. */
export const creditsOf = (
  ledger: CreditLedger.Service,
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): Effect.Effect<Map<string, CreditLedger.Credit | undefined>> =>
  Effect.map(
    Effect.forEach(KeySelector.candidates(request, keys), (k) =>
      Effect.map(ledger.credit(k), (c) => [k.id, c] as const)
    ),
    (pairs) => new Map(pairs)
  )

/** Settles the reservation from the outcome; a 402 empties the key until its next lookup. */
export const settleReport =
  (
    ledger: CreditLedger.Service,
    key: Key.Key,
    reservation: CreditLedger.Reservation,
    estimate: number,
    inner: KeySelector.Lease["report"]
  ): KeySelector.Lease["report"] =>
  (outcome) => {
    const settle =
      outcome._tag === "Success"
        ? reservation.settle(outcome.cost ?? estimate)
        : outcome.error._tag === "InsufficientCredits"
          ? Effect.zipRight(reservation.settle(0), ledger.exhaust(key))
          : reservation.settle(0)
    return Effect.zipRight(settle, inner(outcome))
  }
