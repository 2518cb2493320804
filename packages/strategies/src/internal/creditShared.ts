// The ledger's reservations within a fleet's slice of each key's credit (see `CreditShare`).
import type * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import type * as CreditLedger from "../CreditLedger.js"
import type * as CreditShare from "../CreditShare.js"
import { isPending, Pending, stepEffect } from "./creditStep.js"

/**
 * Reserves `amount` (nano-dollars) as `attempt` does, on a key whose slice covers it. When no
 * slice does, the selection waits while the share asks the fleet for more (others' unused credit
 * moves to this replica by demand), then tries once more: a refusal then means the fleet's credit
 * is gone, not that this replica's slice ran dry. `until`: the request's deadline, which the wait
 * may reach while the fleet can still grant (see `CreditShare.grow`).
 */
export const withinShare = <H>(
  share: CreditShare.Service,
  keys: ReadonlyArray<Key.Key>,
  include: (key: Key.Key) => boolean,
  amount: number,
  attempt: (gate: (key: Key.Key) => boolean) => CreditLedger.Step<H | undefined>,
  until?: number | undefined
): CreditLedger.Step<H | undefined> => {
  const gate = (k: Key.Key) => include(k) && share.covers(k.id, amount)
  const grown = Effect.suspend(() =>
    Effect.zipRight(
      share.grow(
        keys.filter(include).map((k) => k.id),
        amount,
        until
      ),
      Effect.suspend(() => stepEffect(attempt(gate)))
    )
  )
  const first = attempt(gate)
  if (isPending(first)) {
    return new Pending(
      Effect.flatMap(first.effect, (held) => (held === undefined ? grown : Effect.succeed(held)))
    )
  }
  return first === undefined ? new Pending(grown) : first
}
