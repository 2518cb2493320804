// The credit ledger's stored model (see `creditLedger.ts`): each key's slot in integer
// nano-dollars, the one record holding every slot, and the pool-ordered index over it.
import type * as Key from "@or-balancer/core/Key"
import type * as CreditLedger from "../CreditLedger.js"
import { MaxTree } from "./maxTree.js"

type Entry = CreditLedger.Entry

// Money is kept in integer nano-dollars, so it adds up exactly: a $0.50 key at $0.01 a request
// serves 50 requests, not 49 and a remainder of $0.00999…; and a small answer's cost ($0.00001995,
// say) is kept whole, as the simulator keeps it. USD only at the edges (API, snapshot); exact up
// to about $9M.
const NANO = 1_000_000_000
export const nanos = (usd: number): number => Math.round(usd * NANO)
export const nanosOrNull = (usd: number | null): number | null => (usd === null ? null : nanos(usd))
export const usd = (m: number): number => m / NANO
export const usdOrNull = (m: number | null): number | null => (m === null ? null : usd(m))

/** Nano-dollars available (remaining − spent − reserved); null = unlimited. */
export const availableOf = (e: Slot): number | null =>
  e.remaining === null ? null : e.remaining - e.spent - e.reserved

export const empty = (id: string): Slot => ({
  id,
  limit: null,
  remaining: 0,
  spent: 0,
  reserved: 0,
  lookedUpAt: undefined,
  error: undefined
})

/**
 * An entry as the ledger keeps it, its amounts in nano-dollars, changed in place so a
 * reservation allocates nothing.
 */
export type Slot = { -readonly [K in keyof Entry]: Entry[K] }

/** The public entry (USD) of a stored slot. */
export const entryOf = (e: Slot): Entry & { readonly available: number | null } => ({
  id: e.id,
  limit: usdOrNull(e.limit),
  remaining: usdOrNull(e.remaining),
  spent: usd(e.spent),
  reserved: usd(e.reserved),
  lookedUpAt: e.lookedUpAt,
  error: e.error,
  ...(e.limitReset === undefined ? {} : { limitReset: e.limitReset }),
  ...(e.outUntil === undefined ? {} : { outUntil: e.outUntil }),
  available: usdOrNull(availableOf(e))
})

/** Every key's entry, by id: one store entry, so one read serves a whole selection. */
export type Ledger = { [id: string]: Slot | undefined }

export const LEDGER = "ledger"

/**
 * A pool-ordered index over one stored ledger record: each key's live credit as an unboxed double,
 * so a big pool's scan reads one typed array instead of three boxed fields per key. It hangs off
 * the record itself and every ledger of the process keeps it current on each change (`touch`), so
 * two ledgers over one memory store see each other's reservations. A store that hands back a fresh
 * record on every read simply gets a fresh index.
 */
interface Index {
  readonly keys: ReadonlyArray<Key.Key>
  readonly position: Map<string, number>
  readonly live: Float64Array
  /** The richest key (ties: first in pool order) at once, and the richest one a gate admits. */
  readonly richest: MaxTree
}

const indexes = new WeakMap<Ledger, Index>()

/** Live credit for the scan: never looked up is -Infinity (never chosen), unlimited +Infinity. */
export const liveOfSlot = (e: Slot | undefined): number => {
  if (e === undefined || e.lookedUpAt === undefined) return -Infinity
  return availableOf(e) ?? Infinity
}

export const indexOf = (ledger: Ledger, keys: ReadonlyArray<Key.Key>): Index => {
  let index = indexes.get(ledger)
  if (index === undefined || index.keys !== keys) {
    const position = new Map<string, number>()
    const live = new Float64Array(keys.length)
    keys.forEach((k, i) => {
      position.set(k.id, i)
      live[i] = liveOfSlot(ledger[k.id])
    })
    index = { keys, position, live, richest: new MaxTree(live) }
    indexes.set(ledger, index)
  }
  return index
}

export const touch = (ledger: Ledger, id: string, e: Slot): void => {
  const index = indexes.get(ledger)
  if (index === undefined) return
  const i = index.position.get(id)
  if (i !== undefined) setLive(index, i, liveOfSlot(e))
}

/** Position `i`'s live credit is now `value`. */
export const setLive = (index: Index, i: number, value: number): void => {
  if (index.live[i] === value) return
  index.live[i] = value
  index.richest.update(i)
}

// The in-place changes of one key's slot that reservations make.
export const release = (e: Slot, amount: number, cost: number | undefined): void => {
  e.reserved = Math.max(0, e.reserved - amount)
  e.spent += nanos(cost ?? 0)
}
export const releasing =
  (amount: number, cost: number | undefined) =>
  (e: Slot): void =>
    release(e, amount, cost)
export const reserve = (e: Slot, amount: number): void => {
  e.reserved += amount
}
export const reserving =
  (amount: number) =>
  (e: Slot): void =>
    reserve(e, amount)
