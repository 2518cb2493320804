/**
 * The live credit of each key: the last `CreditLookup` answer (cached per key with a TTL, one
 * lookup in flight per key however many selections ask, and only a short TTL after a failed
 * lookup), minus the cost reported since that answer, minus reservations for requests still in
 * flight. Shared by {@link CreditAware} and {@link Threshold}; readable through `snapshot` for a
 * status page.
 *
 * The ledger itself (remaining, spent, reserved) lives in the `StateStore` (namespace
 * `or-balancer/credit`, id `ledger`: one record of every key's entry, so a selection reads it
 * once); the lookup cache is per process.
 *
 * @since 0.1.0
 */
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Cache from "effect/Cache"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { ns } from "./internal/common.js"

/**
 * One key's ledger entry, as stored.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Entry {
  readonly id: string
  /** Credit cap in USD from the last lookup; null = unlimited. */
  readonly limit: number | null
  /** `limit_remaining` from the last lookup; null = unlimited. */
  readonly remaining: number | null
  /** Cost reported since the last lookup. */
  readonly spent: number
  /** Estimates held by requests in flight. */
  readonly reserved: number
  /** When the last successful lookup answered (epoch ms), if ever. */
  readonly lookedUpAt: number | undefined
  /** The last lookup's error tag, if the last lookup failed. */
  readonly error: string | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Credit {
  /** USD that may still be spent: remaining − spent − reserved; null = unlimited. */
  readonly available: number | null
  /** When the cached lookup expires, so the balance may change (epoch ms). */
  readonly refreshAt: number
}

/**
 * A reservation held for one attempt; the lease's report settles it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Reservation {
  /** Replaces the estimate by the actual cost (0: nothing was spent) and ends the reservation. Idempotent. */
  readonly settle: (cost: number) => Effect.Effect<void>
}

/**
 * A reservation that can also be settled synchronously (handed out by {@link Unsafe}). `settle`
 * and `unsafeSettle` are one settlement: whichever runs first counts.
 *
 * @since 0.2.0
 * @category Models
 */
export interface UnsafeReservation extends Reservation {
  readonly unsafeSettle: (cost: number) => void
}

/**
 * A reservation on the key it was taken on.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Reserved {
  readonly key: Key.Key
  readonly reservation: Reservation
}

/**
 * A synchronously settled reservation on the key it was taken on.
 *
 * @since 0.2.0
 * @category Models
 */
export interface UnsafeReserved extends Reserved {
  readonly reservation: UnsafeReservation
}

/**
 * Live balances of a set of keys, read once for one selection (see `Service.balances`).
 *
 * @since 0.1.0
 * @category Models
 */
export interface Balances {
  /** USD available (remaining − spent − reserved); null = unlimited; undefined = never looked up successfully. */
  readonly available: (key: Key.Key) => number | null | undefined
  /** When the key's cached lookup expires (epoch ms), 0 if unknown. */
  readonly refreshAt: (key: Key.Key) => number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** The key's live credit; `undefined` when it was never looked up successfully. */
  readonly credit: (key: Key.Key) => Effect.Effect<Credit | undefined>
  /**
   * The live credit of every key `include` admits, for one selection: stale lookups are
   * refreshed first (through the same single-flight cache as `credit`), then the ledger is read
   * once. Cheaper than `credit` per key.
   */
  readonly balances: (
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean
  ) => Effect.Effect<Balances>
  /**
   * Reserves `amount` on the key with the most live credit among those `include` admits and that
   * have at least `amount` available (unlimited beats any balance; ties go to the first in pool
   * order). Stale lookups are refreshed first, as in `balances`; then reading the balances and
   * reserving are one atomic store update, so concurrent selections never both take a key's
   * last credit. `undefined` when no key qualifies.
   */
  readonly tryReserveBest: (
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean,
    amount: number
  ) => Effect.Effect<Reserved | undefined>
  /** Reserves `amount` unconditionally. */
  readonly reserve: (key: Key.Key, amount: number) => Effect.Effect<Reservation>
  /** The upstream said 402: treat the key as empty until the next lookup says otherwise. */
  readonly exhaust: (key: Key.Key) => Effect.Effect<void>
  /** Drops the cached lookup, so the next `credit` asks again. */
  readonly refresh: (key: Key.Key) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyArray<Entry & { readonly available: number | null }>>
  /**
   * The selection-path operations, synchronous, for `KeySelector.unsafeSelect`: only over a
   * store with synchronous forms (`StateStore.unsafe`). They never look anything up: `fresh`
   * says whether the Effect forms would (then the caller takes the Effect path instead).
   */
  readonly unsafe?: Unsafe | undefined
}

/**
 * Synchronous forms of the ledger's selection path, over the cached lookups as they stand.
 *
 * @since 0.2.0
 * @category Models
 */
export interface Unsafe {
  /**
   * Whether no key `include` admits needs a lookup now: then `balances` and `tryReserveBest`
   * would refresh nothing, and the forms below decide exactly as they would.
   */
  readonly fresh: (keys: ReadonlyArray<Key.Key>, include: (key: Key.Key) => boolean) => boolean
  /** `Service.balances` without the refresh: ask `fresh` first. */
  readonly balances: () => Balances
  /** `Service.tryReserveBest` without the refresh: ask `fresh` first. */
  readonly tryReserveBest: (
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean,
    amount: number
  ) => UnsafeReserved | undefined
  readonly reserve: (key: Key.Key, amount: number) => UnsafeReservation
  readonly exhaust: (key: Key.Key) => void
}

/**
 * @since 0.1.0
 * @category Context
 */
export class CreditLedger extends Context.Tag("@or-balancer/strategies/CreditLedger")<
  CreditLedger,
  Service
>() {}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** How long a lookup is trusted. Default 60 seconds. */
  readonly ttl?: Duration.DurationInput | undefined
  /** How long a failed lookup is remembered before the next try. Default 5 seconds. */
  readonly failureTtl?: Duration.DurationInput | undefined
}

const availableOf = (e: Entry): number | null =>
  e.remaining === null ? null : e.remaining - e.spent - e.reserved

const empty = (id: string): Entry => ({
  id,
  limit: null,
  remaining: 0,
  spent: 0,
  reserved: 0,
  lookedUpAt: undefined,
  error: undefined
})

/** An entry as the ledger changes it: in place, so a reservation allocates nothing. */
type Slot = { -readonly [K in keyof Entry]: Entry[K] }

/** Every key's entry, by id: one store entry, so one read serves a whole selection. */
type Ledger = { [id: string]: Slot | undefined }

const LEDGER = "ledger"

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
}

const indexes = new WeakMap<Ledger, Index>()

/** Live credit for the scan: never looked up is -Infinity (never chosen), unlimited +Infinity. */
const liveOfSlot = (e: Slot | undefined): number => {
  if (e === undefined || e.lookedUpAt === undefined) return -Infinity
  return availableOf(e) ?? Infinity
}

const indexOf = (ledger: Ledger, keys: ReadonlyArray<Key.Key>): Index => {
  let index = indexes.get(ledger)
  if (index === undefined || index.keys !== keys) {
    const position = new Map<string, number>()
    const live = new Float64Array(keys.length)
    keys.forEach((k, i) => {
      position.set(k.id, i)
      live[i] = liveOfSlot(ledger[k.id])
    })
    index = { keys, position, live }
    indexes.set(ledger, index)
  }
  return index
}

const touch = (ledger: Ledger, id: string, e: Slot): void => {
  const index = indexes.get(ledger)
  if (index === undefined) return
  const i = index.position.get(id)
  if (i !== undefined) index.live[i] = liveOfSlot(e)
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, never, CreditLookup.CreditLookup | StateStore.StateStore> =>
  Effect.gen(function* () {
    const lookup = yield* CreditLookup.CreditLookup
    const store = yield* StateStore.StateStore
    const clock = yield* Effect.clock
    const ttl = Duration.toMillis(options.ttl ?? Duration.seconds(60))
    const failureTtl = Duration.toMillis(options.failureTtl ?? Duration.seconds(5))
    // When each key's cached answer expires, for `refreshAt` hints.
    const expiry = new Map<string, number>()
    // Until when the cache surely holds an answer for this key (it counts its TTL from the end of
    // the lookup, this from the start): selections skip the cache until then. Per key object, as
    // the cache is.
    const fresh = new WeakMap<Key.Key, number>()

    // The store's synchronous forms, if any: `unsafe` is built on them.
    const syncStore = store.unsafe

    // Replaces one key's entry (`undefined`: leave it as it is). The record is plain data,
    // changed in place, so a shared store can still serialise it. The store update, for
    // `store.modify` and its synchronous form alike.
    const updating =
      <B>(id: string, f: (current: Entry | undefined) => readonly [B, Entry | undefined]) =>
      (current: Ledger | undefined): readonly [B, Ledger] => {
        const ledger: Ledger = current ?? Object.create(null)
        const [b, next] = f(ledger[id])
        if (next !== undefined) {
          ledger[id] = next
          touch(ledger, id, next)
        }
        return [b, ledger]
      }
    const update = <B>(id: string, f: (current: Entry | undefined) => readonly [B, Entry | undefined]) =>
      store.modify<Ledger, B>(ns.credit, LEDGER, updating(id, f))

    // Changes one key's entry in place (creating it if missing); the store update.
    const adjusting =
      (id: string, f: (entry: Slot) => void) =>
      (current: Ledger | undefined): readonly [void, Ledger] => {
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
    const adjust = (id: string, f: (entry: Slot) => void) =>
      store.modify<Ledger, void>(ns.credit, LEDGER, adjusting(id, f))

    // Every key of `scanned` is fresh until `scannedUntil`: while the pool and that bound hold,
    // a selection needs no per-key check at all.
    let scanned: ReadonlyArray<Key.Key> | undefined
    let scannedUntil = 0

    const trust = (key: Key.Key, until: number) => {
      fresh.set(key, until)
      if (until < scannedUntil) scannedUntil = until
    }

    const fetch = (key: Key.Key) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        lookup.lookup(key).pipe(
          Effect.tapBoth({
            onSuccess: (info) =>
              Effect.suspend(() => {
                expiry.set(key.id, now + ttl)
                trust(key, now + ttl)
                return update<void>(key.id, (cur) => [
                  undefined,
                  {
                    id: key.id,
                    limit: info.limit,
                    remaining: info.limitRemaining,
                    spent: 0,
                    reserved: cur?.reserved ?? 0,
                    lookedUpAt: now,
                    error: undefined
                  }
                ])
              }),
            onFailure: (error) =>
              Effect.suspend(() => {
                expiry.set(key.id, now + failureTtl)
                trust(key, now + failureTtl)
                return update<void>(key.id, (cur) => [
                  undefined,
                  // A failed lookup keeps the last known balance; it is not "balance 0".
                  { ...(cur ?? { ...empty(key.id), remaining: null }), error: error._tag }
                ])
              })
          })
        )
      )

    const cache = yield* Cache.makeWith({
      capacity: 4096,
      lookup: fetch,
      timeToLive: Exit.match({ onFailure: () => failureTtl, onSuccess: () => ttl })
    })

    const ledger = store.get<Ledger>(ns.credit, LEDGER)
    const liveOf = (e: Entry | undefined) =>
      e === undefined || e.lookedUpAt === undefined ? undefined : availableOf(e)

    const credit: Service["credit"] = (key) =>
      cache.get(key).pipe(
        Effect.ignore,
        Effect.zipRight(ledger),
        Effect.map((l) => {
          const e = l?.[key.id]
          return e === undefined || e.lookedUpAt === undefined
            ? undefined
            : { available: availableOf(e), refreshAt: expiry.get(key.id) ?? 0 }
        })
      )

    const refreshAt = (key: Key.Key) => expiry.get(key.id) ?? 0
    const balancesOf = (l: Ledger | undefined): Balances => ({
      available: l === undefined ? () => undefined : (key) => liveOf(l[key.id]),
      refreshAt
    })
    const read = Effect.map(ledger, balancesOf)

    // The keys `include` admits whose cached answer may have expired at `now` (undefined: none).
    // The clock is the one the ledger was built with, as the cache's is.
    const staleOf = (
      keys: ReadonlyArray<Key.Key>,
      include: (key: Key.Key) => boolean,
      now: number
    ): Array<Key.Key> | undefined => {
      if (keys === scanned && now < scannedUntil) return undefined
      let stale: Array<Key.Key> | undefined
      let until = Infinity
      for (const k of keys) {
        const u = fresh.get(k) ?? 0
        if (u < until) until = u
        if (now >= u && include(k)) (stale ??= []).push(k)
      }
      scanned = keys
      scannedUntil = until
      return stale
    }

    // Runs `then` after looking up the stale keys; while nothing is stale (nearly always), no
    // Effect step is added.
    const afterRefresh = <A>(
      keys: ReadonlyArray<Key.Key>,
      include: (key: Key.Key) => boolean,
      then: Effect.Effect<A>
    ): Effect.Effect<A> =>
      Effect.suspend(() => {
        const stale = staleOf(keys, include, clock.unsafeCurrentTimeMillis())
        if (stale === undefined) return then
        // One at a time, as `credit` per key did; the cache makes concurrent selections share a lookup.
        return Effect.zipRight(
          Effect.forEach(stale, (k) => Effect.ignore(cache.get(k)), { discard: true }),
          then
        )
      })

    const balances: Service["balances"] = (keys, include) => afterRefresh(keys, include, read)

    // `tryReserveBest`'s store update, for both forms.
    const reservingBest =
      (keys: ReadonlyArray<Key.Key>, include: (key: Key.Key) => boolean, amount: number) =>
      (current: Ledger | undefined): readonly [Held | undefined, Ledger | undefined] => {
        if (current === undefined) return [undefined, current]
        const live = indexOf(current, keys).live
        // First the richest key, in a plain numeric loop (ties: the first); nearly always the
        // gate admits it. Only if not, a second pass asks the gate of each key that would win.
        let best = -1
        let bestValue = -Infinity
        for (let i = 0; i < live.length; i++) {
          if (live[i]! > bestValue) {
            best = i
            bestValue = live[i]!
          }
        }
        if (best >= 0 && !(bestValue >= amount && include(keys[best]!))) {
          best = -1
          bestValue = -Infinity
          for (let i = 0; i < live.length; i++) {
            const a = live[i]!
            if (a >= amount && a > bestValue && include(keys[i]!)) {
              best = i
              bestValue = a
            }
          }
        }
        if (best < 0 || bestValue < amount) return [undefined, current]
        const key = keys[best]!
        const e = current[key.id]!
        e.reserved += amount
        live[best] = liveOfSlot(e)
        return [new Held(key, amount), current]
      }

    const tryReserveBest: Service["tryReserveBest"] = (keys, include, amount) =>
      afterRefresh(
        keys,
        include,
        store.modify<Ledger, Reserved | undefined>(ns.credit, LEDGER, reservingBest(keys, include, amount))
      )

    const releasing =
      (amount: number, cost: number | undefined) =>
      (e: Slot): void => {
        e.reserved = Math.max(0, e.reserved - amount)
        e.spent += cost ?? 0
      }
    const reserving =
      (amount: number) =>
      (e: Slot): void => {
        e.reserved += amount
      }
    const exhausting =
      (id: string) =>
      (cur: Entry | undefined): readonly [void, Entry] => {
        const e = cur ?? empty(id)
        return [undefined, { ...e, remaining: 0, spent: 0, lookedUpAt: e.lookedUpAt ?? 0 }]
      }

    // A class, not a closure per reservation: one small object on the selection path.
    class Held implements UnsafeReservation, UnsafeReserved {
      private open = true
      readonly reservation: UnsafeReservation = this
      constructor(
        readonly key: Key.Key,
        readonly amount: number
      ) {}
      settle(cost: number): Effect.Effect<void> {
        return Effect.suspend(() => {
          if (!this.open) return Effect.void
          this.open = false
          return adjust(this.key.id, releasing(this.amount, cost))
        })
      }
      // Reached only through `unsafe`, which exists only over a store with synchronous forms.
      unsafeSettle(cost: number): void {
        if (!this.open || syncStore === undefined) return
        this.open = false
        syncStore.modify<Ledger, void>(
          ns.credit,
          LEDGER,
          adjusting(this.key.id, releasing(this.amount, cost))
        )
      }
    }

    const reserve: Service["reserve"] = (key, amount) =>
      Effect.suspend(() => {
        const held = new Held(key, amount)
        return Effect.as(adjust(key.id, reserving(amount)), held)
      })

    const unsafe: Unsafe | undefined =
      syncStore === undefined
        ? undefined
        : {
            fresh: (keys, include) => staleOf(keys, include, clock.unsafeCurrentTimeMillis()) === undefined,
            balances: () => balancesOf(syncStore.get<Ledger>(ns.credit, LEDGER)),
            tryReserveBest: (keys, include, amount) =>
              syncStore.modify<Ledger, Held | undefined>(
                ns.credit,
                LEDGER,
                reservingBest(keys, include, amount)
              ),
            reserve: (key, amount) => {
              const held = new Held(key, amount)
              syncStore.modify<Ledger, void>(ns.credit, LEDGER, adjusting(key.id, reserving(amount)))
              return held
            },
            exhaust: (key) =>
              syncStore.modify<Ledger, void>(ns.credit, LEDGER, updating(key.id, exhausting(key.id)))
          }

    return CreditLedger.of({
      credit,
      balances,
      tryReserveBest,
      reserve,
      exhaust: (key) => update<void>(key.id, exhausting(key.id)),
      refresh: (key) =>
        Effect.zipRight(
          cache.invalidate(key),
          Effect.sync(() => {
            fresh.delete(key)
            scannedUntil = 0
          })
        ),
      snapshot: Effect.map(ledger, (l) =>
        l === undefined
          ? []
          : Object.keys(l).flatMap((id) => {
              const e = l[id]
              return e === undefined ? [] : [{ ...e, available: availableOf(e) }]
            })
      ),
      unsafe
    })
  })

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<CreditLedger, never, CreditLookup.CreditLookup | StateStore.StateStore> =>
  Layer.effect(CreditLedger, make(options))
