// The credit ledger's one record in the state store (see `creditLedger.ts`): read and changed
// synchronously when the store has synchronous forms, else as a `Pending` Effect.
import type * as StateStore from "@or-balancer/core/StateStore"
import type * as Effect from "effect/Effect"
import type * as CreditLedger from "../CreditLedger.js"
import { ns } from "./common.js"
import {
  empty,
  LEDGER,
  type Ledger,
  release,
  releasing,
  reserve,
  reserving,
  type Slot,
  touch
} from "./ledgerSlots.js"
import { Pending } from "./creditStep.js"

type Step<A> = CreditLedger.Step<A>

/**
 * Replaces one key's entry (`undefined`: leave it as it is). The record is plain data, changed in
 * place, so a shared store can still serialise it. The store update, for `store.modify` and its
 * synchronous form alike.
 */
export const updating =
  <B>(id: string, f: (current: Slot | undefined) => readonly [B, Slot | undefined]) =>
  (current: Ledger | undefined): readonly [B, Ledger] => {
    const ledger: Ledger = current ?? Object.create(null)
    const [b, next] = f(ledger[id])
    if (next !== undefined) {
      ledger[id] = next
      touch(ledger, id, next)
    }
    return [b, ledger]
  }

/** Changes one key's entry in place (creating it if missing); the store update. */
export const adjusting =
  (id: string, f: (entry: Slot) => void) =>
  (current: Ledger | undefined): readonly [void, Ledger] =>
    adjust(current, id, f)

const adjust = (
  current: Ledger | undefined,
  id: string,
  f: (entry: Slot) => void
): readonly [void, Ledger] => {
  const ledger: Ledger = current ?? Object.create(null)
  let e = ledger[id]
  if (e === undefined) {
    e = empty(id)
    ledger[id] = e
  }
  f(e)
  touch(ledger, id, e)
  return [undefined, ledger]
}

/** The ledger record of one store. */
export interface LedgerRecord {
  /** Changes the record: at once over a store with synchronous forms. */
  readonly modify: <B>(f: (current: Ledger | undefined) => readonly [B, Ledger | undefined]) => Step<B>
  /** Reads the record: at once over a store with synchronous forms. */
  readonly read: () => Step<Ledger | undefined>
  /** Reserves `amount` nano-dollars on a key (see `reserving`). */
  readonly reserve: (id: string, amount: number) => Step<void>
  /** Releases a reservation of `amount` nano-dollars and records what it spent (see `releasing`). */
  readonly release: (id: string, amount: number, cost: number | undefined) => Step<void>
  /** Replaces one key's entry, as an Effect (see `updating`). */
  readonly update: <B>(
    id: string,
    f: (current: Slot | undefined) => readonly [B, Slot | undefined]
  ) => Effect.Effect<B>
  readonly get: Effect.Effect<Ledger | undefined>
}

export const ledgerRecord = (store: StateStore.Service): LedgerRecord => {
  // The store's synchronous forms, if any: the selection path answers at once over them.
  const syncStore = store.unsafe
  const get = store.get<Ledger>(ns.credit, LEDGER)
  const modify = <B>(f: (current: Ledger | undefined) => readonly [B, Ledger | undefined]): Step<B> =>
    syncStore !== undefined
      ? syncStore.modify(ns.credit, LEDGER, f)
      : new Pending(store.modify(ns.credit, LEDGER, f))
  // A reservation's two updates over a synchronous store, with no closure per call: one function
  // each, reading the key and amounts set just before it runs (nothing yields inside `modify`).
  let opId = ""
  let opAmount = 0
  let opCost: number | undefined
  const reserveOp = (e: Slot) => reserve(e, opAmount)
  const releaseOp = (e: Slot) => release(e, opAmount, opCost)
  const reserveNow = (current: Ledger | undefined) => adjust(current, opId, reserveOp)
  const releaseNow = (current: Ledger | undefined) => adjust(current, opId, releaseOp)
  return {
    modify,
    reserve: (id, amount) => {
      if (syncStore === undefined) return modify(adjusting(id, reserving(amount)))
      opId = id
      opAmount = amount
      return syncStore.modify(ns.credit, LEDGER, reserveNow)
    },
    release: (id, amount, cost) => {
      if (syncStore === undefined) return modify(adjusting(id, releasing(amount, cost)))
      opId = id
      opAmount = amount
      opCost = cost
      return syncStore.modify(ns.credit, LEDGER, releaseNow)
    },
    read: () => (syncStore !== undefined ? syncStore.get<Ledger>(ns.credit, LEDGER) : new Pending(get)),
    update: (id, f) => store.modify(ns.credit, LEDGER, updating(id, f)),
    get
  }
}
