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
  /** Reserves `amount` if at least that much is available (unlimited always is); atomically. */
  readonly tryReserve: (key: Key.Key, amount: number) => Effect.Effect<Reservation | undefined>
  /** Reserves `amount` unconditionally. */
  readonly reserve: (key: Key.Key, amount: number) => Effect.Effect<Reservation>
  /** The upstream said 402: treat the key as empty until the next lookup says otherwise. */
  readonly exhaust: (key: Key.Key) => Effect.Effect<void>
  /** Drops the cached lookup, so the next `credit` asks again. */
  readonly refresh: (key: Key.Key) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyArray<Entry & { readonly available: number | null }>>
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

/** Every key's entry, by id: one store entry, so one read serves a whole selection. */
type Ledger = { [id: string]: Entry | undefined }

const LEDGER = "ledger"

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
    const ttl = Duration.toMillis(options.ttl ?? Duration.seconds(60))
    const failureTtl = Duration.toMillis(options.failureTtl ?? Duration.seconds(5))
    // When each key's cached answer expires, for `refreshAt` hints.
    const expiry = new Map<string, number>()
    // Until when the cache surely holds an answer for this key (it counts its TTL from the end of
    // the lookup, this from the start): selections skip the cache until then. Per key object, as
    // the cache is.
    const fresh = new WeakMap<Key.Key, number>()

    // Replaces one key's entry (`undefined`: leave it as it is). The record is plain data,
    // changed in place, so a shared store can still serialise it.
    const update = <B>(id: string, f: (current: Entry | undefined) => readonly [B, Entry | undefined]) =>
      store.modify<Ledger, B>(ns.credit, LEDGER, (current) => {
        const ledger: Ledger = current ?? Object.create(null)
        const [b, next] = f(ledger[id])
        if (next !== undefined) ledger[id] = next
        return [b, ledger]
      })

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
    const read = Effect.map(ledger, (l): Balances => ({
      available: l === undefined ? () => undefined : (key) => liveOf(l[key.id]),
      refreshAt
    }))

    const balances: Service["balances"] = (keys, include) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (keys === scanned && now < scannedUntil) return read
        let stale: Array<Key.Key> | undefined
        let until = Infinity
        for (const k of keys) {
          const u = fresh.get(k) ?? 0
          if (u < until) until = u
          if (now >= u && include(k)) (stale ??= []).push(k)
        }
        scanned = keys
        scannedUntil = until
        if (stale === undefined) return read
        // One at a time, as `credit` per key did; the cache makes concurrent selections share a lookup.
        return Effect.zipRight(
          Effect.forEach(stale, (k) => Effect.ignore(cache.get(k)), { discard: true }),
          read
        )
      })

    const release = (key: Key.Key, amount: number, cost: number | undefined) =>
      update<void>(key.id, (cur) => {
        const e = cur ?? empty(key.id)
        return [undefined, { ...e, reserved: Math.max(0, e.reserved - amount), spent: e.spent + (cost ?? 0) }]
      })

    const hold = (key: Key.Key, amount: number): Reservation => {
      let open = true
      return {
        settle: (cost) =>
          Effect.suspend(() => {
            if (!open) return Effect.void
            open = false
            return release(key, amount, cost)
          })
      }
    }

    const tryReserve: Service["tryReserve"] = (key, amount) =>
      update<Reservation | undefined>(key.id, (cur) => {
        const e = cur ?? empty(key.id)
        const a = availableOf(e)
        if (a !== null && a < amount) return [undefined, undefined]
        return [hold(key, amount), { ...e, reserved: e.reserved + amount }]
      })

    const reserve: Service["reserve"] = (key, amount) =>
      update<Reservation>(key.id, (cur) => {
        const e = cur ?? empty(key.id)
        return [hold(key, amount), { ...e, reserved: e.reserved + amount }]
      })

    return CreditLedger.of({
      credit,
      balances,
      tryReserve,
      reserve,
      exhaust: (key) =>
        update<void>(key.id, (cur) => {
          const e = cur ?? empty(key.id)
          return [undefined, { ...e, remaining: 0, spent: 0, lookedUpAt: e.lookedUpAt ?? 0 }]
        }),
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
      )
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
