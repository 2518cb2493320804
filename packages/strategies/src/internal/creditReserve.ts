// The ledger's reservations (see `creditLedger.ts`): the store update that reserves on the richest
// key a gate admits, and the reservation it hands out.
import type * as Key from "@or-balancer/core/Key"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import type * as CreditLedger from "../CreditLedger.js"
import type * as CreditShare from "../CreditShare.js"
import { isPending } from "./creditStep.js"
import { indexOf, type Ledger, liveOfSlot, nanos, setLive } from "./ledgerSlots.js"
import type { LedgerRecord } from "./ledgerStore.js"

/** What a reservation settles through: one per ledger. */
export interface Holder {
  readonly record: LedgerRecord
  readonly share: CreditShare.Service | undefined
}

export const reportOf = (step: CreditLedger.Step<void>): KeySelector.Reported =>
  isPending(step) ? step.effect : undefined

// A class, not a closure per reservation: one small object on the selection path.
export class Held implements CreditLedger.Reservation, CreditLedger.Reserved {
  private open = true
  readonly reservation: CreditLedger.Reservation = this
  constructor(
    readonly key: Key.Key,
    /** Nano-dollars. */
    readonly amount: number,
    private readonly holder: Holder
  ) {}
  settle(cost: number): KeySelector.Reported {
    if (!this.open) return
    this.open = false
    this.holder.share?.settle(this.key.id, this.amount, nanos(cost))
    return reportOf(this.holder.record.release(this.key.id, this.amount, cost))
  }
}

/** `tryReserveBest`'s store update: reserves `amount` (nano-dollars) on the richest key `include` admits. */
export const reservingBest =
  (holder: Holder, keys: ReadonlyArray<Key.Key>, include: (key: Key.Key) => boolean, amount: number) =>
  (current: Ledger | undefined): readonly [Held | undefined, Ledger | undefined] => {
    if (current === undefined) return [undefined, current]
    const index = indexOf(current, keys)
    // The richest key with `amount` left that the gate admits, from the index's tournament tree:
    // nearly always its leader, and past a refused key O(log n) more, not a pass over the pool.
    const best = index.richest.bestWhere(amount, keys, include)
    if (best < 0) return [undefined, current]
    const key = keys[best]!
    const e = current[key.id]!
    e.reserved += amount
    holder.share?.take(key.id, amount)
    setLive(index, best, liveOfSlot(e))
    return [new Held(key, amount, holder), current]
  }
