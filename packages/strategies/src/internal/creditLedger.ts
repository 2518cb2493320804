// The ledger's implementation (see `CreditLedger.ts`): the selection path (`now`) answers at once
// over a store with synchronous forms when no lookup is due; the Effect forms are derived from it.
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Cache from "effect/Cache"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as CreditLedger from "../CreditLedger.js"
import { CreditShare } from "../CreditShare.js"
import { ns } from "./common.js"
import { AccountsOut, exhausting, lookupWithAccount, raised } from "./creditOut.js"
import { shareAccountsOut } from "./healthFleet.js"
import { withinShare } from "./creditShared.js"
import { isPending, Pending, stepEffect } from "./creditStep.js"
import {
  availableOf,
  empty,
  entryOf,
  indexOf,
  LEDGER,
  type Ledger,
  liveOfSlot,
  nanos,
  nanosOrNull,
  releasing,
  reserving,
  type Slot,
  touch,
  usdOrNull
} from "./ledgerSlots.js"

type Balances = CreditLedger.Balances
type Now = CreditLedger.Now
type Reservation = CreditLedger.Reservation
type Reserved = CreditLedger.Reserved
type Service = CreditLedger.Service
type Step<A> = CreditLedger.Step<A>

export { decideWith, Pending, stepEffect } from "./creditStep.js"

export const make = (
  options: CreditLedger.Options = {}
): Effect.Effect<CreditLedger.Service, never, CreditLookup.CreditLookup | StateStore.StateStore> =>
  Effect.gen(function* () {
    const lookup = yield* CreditLookup.CreditLookup
    const store = yield* StateStore.StateStore
    const clock = yield* Effect.clock
    // A fleet's slice of each key's credit (absent: this process owns all of it, at no cost).
    const share = Option.getOrUndefined(yield* Effect.serviceOption(CreditShare))
    const ttl = Duration.toMillis(options.ttl ?? Duration.seconds(60))
    const failureTtl = Duration.toMillis(options.failureTtl ?? Duration.seconds(5))
    const accountsOut = new AccountsOut(Duration.toMillis(options.accountRecheck ?? Duration.seconds(60)))
    // With a fleet (`HealthShare`), accounts out are shared; else this process's own.
    const publishOut = yield* shareAccountsOut(accountsOut)
    // An answer holds for the TTL, but never past the key's `limit_reset` (00:00 UTC): its cap is
    // whole again then, so an exhausted key is looked up and re-admitted at once, with no 402 first.
    const answerExpiry = (info: CreditLookup.KeyInfo, now: number) =>
      info.limitReset === null ? now + ttl : Math.min(now + ttl, CreditLookup.nextReset(info.limitReset, now))
    const aheadMs = ttl * Math.min(1, Math.max(0, options.refreshAhead ?? 0.8))
    // Background refreshes run on the runtime the ledger was built in (its clock included).
    const background = Runtime.runFork(yield* Effect.runtime<never>())
    // When each key's cached answer expires, for `refreshAt` hints.
    const expiry = new Map<string, number>()
    // Until when the cache surely holds an answer for this key (it counts its TTL from the end of
    // the lookup, this from the start): selections skip the cache until then. Per key object, as
    // the cache is.
    const fresh = new WeakMap<Key.Key, number>()
    // From when a key's good answer is looked up again in the background while still trusted, so
    // selections stay synchronous across its expiry (absent: no refresh ahead, as after a failure).
    const ahead = new WeakMap<Key.Key, number>()
    const refreshing = new WeakSet<Key.Key>()

    // The store's synchronous forms, if any: the selection path answers at once over them.
    const syncStore = store.unsafe
    const modifyLedger = <B>(
      f: (current: Ledger | undefined) => readonly [B, Ledger | undefined]
    ): Step<B> =>
      syncStore !== undefined
        ? syncStore.modify<Ledger, B>(ns.credit, LEDGER, f)
        : new Pending(store.modify<Ledger, B>(ns.credit, LEDGER, f))
    const readLedger = (): Step<Ledger | undefined> =>
      syncStore !== undefined ? syncStore.get<Ledger>(ns.credit, LEDGER) : new Pending(ledger)

    // Replaces one key's entry (`undefined`: leave it as it is). The record is plain data,
    // changed in place, so a shared store can still serialise it. The store update, for
    // `store.modify` and its synchronous form alike.
    const updating =
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
    const update = <B>(id: string, f: (current: Slot | undefined) => readonly [B, Slot | undefined]) =>
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
    // Every key of `scanned` is fresh until `scannedUntil`: while the pool and that bound hold,
    // a selection needs no per-key check at all.
    let scanned: ReadonlyArray<Key.Key> | undefined
    let scannedUntil = 0

    const trust = (key: Key.Key, until: number, refreshFrom: number = until) => {
      fresh.set(key, until)
      if (refreshFrom < until) ahead.set(key, refreshFrom)
      else ahead.delete(key)
      if (refreshFrom < scannedUntil) scannedUntil = refreshFrom
    }

    // With a management key for the account, spendable is the smaller of the key's and the account's.
    const lookupOf = (key: Key.Key) => lookupWithAccount(lookup, key, accountsOut)
    const fetch = (key: Key.Key) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        (share === undefined ? lookupOf(key) : share.lookup(key, lookupOf(key))).pipe(
          Effect.tapBoth({
            onSuccess: (info) =>
              Effect.suspend(() => {
                const until = answerExpiry(info, now)
                expiry.set(key.id, until)
                // Looked up again in the background once `refreshAhead` of its life has passed.
                trust(key, until, Math.min(until, now + aheadMs))
                const limit = nanosOrNull(info.limit)
                return update<void>(key.id, (cur) => {
                  // A key out at its own limit stays out until its reset, whatever a lookup in
                  // between says (issue 14), unless the lookup shows its limit raised.
                  const outUntil =
                    cur?.outUntil !== undefined && cur.outUntil > now && !raised(cur.limit, limit)
                      ? cur.outUntil
                      : undefined
                  return [
                    undefined,
                    {
                      id: key.id,
                      limit,
                      remaining: outUntil === undefined ? nanosOrNull(info.limitRemaining) : 0,
                      spent: 0,
                      reserved: cur?.reserved ?? 0,
                      lookedUpAt: now,
                      error: undefined,
                      limitReset: info.limitReset,
                      outUntil
                    }
                  ]
                })
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
      timeToLive: Exit.match({
        onFailure: () => failureTtl,
        onSuccess: (info) => {
          const now = clock.unsafeCurrentTimeMillis()
          return Math.max(0, answerExpiry(info, now) - now)
        }
      })
    })

    const ledger = store.get<Ledger>(ns.credit, LEDGER)
    const liveOf = (e: Slot | undefined) =>
      e === undefined || e.lookedUpAt === undefined ? undefined : usdOrNull(availableOf(e))

    const credit: Service["credit"] = (key) =>
      cache.get(key).pipe(
        Effect.ignore,
        Effect.zipRight(ledger),
        Effect.map((l) => {
          const e = l?.[key.id]
          return e === undefined || e.lookedUpAt === undefined
            ? undefined
            : { available: usdOrNull(availableOf(e)), refreshAt: expiry.get(key.id) ?? 0 }
        })
      )

    // When a key's balance may next change: its lookup's expiry, or the end of its being out.
    const refreshAtIn = (l: Ledger | undefined, now: number) => (key: Key.Key) =>
      Math.max(expiry.get(key.id) ?? 0, l?.[key.id]?.outUntil ?? 0, accountsOut.untilOf(key, now) ?? 0)
    const balancesOf = (l: Ledger | undefined): Balances => {
      if (!accountsOut.any)
        return {
          available: l === undefined ? () => undefined : (key) => liveOf(l[key.id]),
          refreshAt: refreshAtIn(l, 0)
        }
      // An account out of credit: its keys have none, whatever their own balances.
      const t = clock.unsafeCurrentTimeMillis()
      return {
        available: (key) =>
          accountsOut.untilOf(key, t) !== undefined ? 0 : l === undefined ? undefined : liveOf(l[key.id]),
        refreshAt: refreshAtIn(l, t)
      }
    }

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
        const a = Math.min(ahead.get(k) ?? u, u)
        if (now < a) {
          if (a < until) until = a
          continue
        }
        if (u < until) until = u
        if (!include(k)) continue
        if (now >= u) (stale ??= []).push(k)
        else if (!refreshing.has(k)) refreshAhead(k)
      }
      scanned = keys
      scannedUntil = until
      return stale
    }

    // Still trusted, but due soon: looked up again off the selection path (single-flight per key;
    // the cache serves the old answer meanwhile), so no selection waits for it at expiry.
    const refreshAhead = (key: Key.Key) => {
      refreshing.add(key)
      background(
        Effect.ensuring(
          Effect.ignore(cache.refresh(key)),
          Effect.sync(() => refreshing.delete(key))
        )
      )
    }

    // `then` after looking up the stale keys; while nothing is stale (nearly always), at once.
    const afterRefresh = <A>(
      keys: ReadonlyArray<Key.Key>,
      include: (key: Key.Key) => boolean,
      then: () => Step<A>
    ): Step<A> => {
      const stale = staleOf(keys, include, clock.unsafeCurrentTimeMillis())
      if (stale === undefined) return then()
      // One at a time, as `credit` per key did; the cache makes concurrent selections share a lookup.
      return new Pending(
        Effect.zipRight(
          Effect.forEach(stale, (k) => Effect.ignore(cache.get(k)), { discard: true }),
          Effect.suspend(() => stepEffect(then()))
        )
      )
    }

    const balancesNow: Now["balances"] = (keys, include) =>
      afterRefresh(keys, include, () => {
        const l = readLedger()
        return isPending(l) ? new Pending(Effect.map(l.effect, balancesOf)) : balancesOf(l)
      })

    // `tryReserveBest`'s store update.
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
        share?.take(key.id, amount)
        live[best] = liveOfSlot(e)
        return [new Held(key, amount), current]
      }

    const tryReserveBestNow: Now["tryReserveBest"] = (keys, include0, amount) => {
      const include = accountsOut.any
        ? accountsOut.including(include0, clock.unsafeCurrentTimeMillis())
        : include0
      return share === undefined
        ? tryReserveBestLocal(keys, include, amount)
        : withinShare(share, keys, include, nanos(amount), (gate) =>
            tryReserveBestLocal(keys, include, amount, gate)
          )
    }

    // `gate`: what may be reserved on; `include`: what is looked up when stale (a key must be
    // looked up before a fleet can lease this replica a slice of it).
    const tryReserveBestLocal = (
      keys: ReadonlyArray<Key.Key>,
      include: (key: Key.Key) => boolean,
      amount: number,
      gate: (key: Key.Key) => boolean = include
    ): Step<Reserved | undefined> => {
      const reserving = reservingBest(keys, gate, nanos(amount))
      // Nothing stale (nearly always): straight to the store, no thunk for `afterRefresh`.
      return staleOf(keys, include, clock.unsafeCurrentTimeMillis()) === undefined
        ? modifyLedger(reserving)
        : afterRefresh(keys, include, () => modifyLedger(reserving))
    }

    const exhaust: Now["exhaust"] = (key, error) => {
      const at = clock.unsafeCurrentTimeMillis()
      if (error?.scope === "account" && key.account !== undefined) {
        // The account has no credit: every key of it is out until the re-check; the key's own
        // balance is not the matter.
        const until = accountsOut.out(key.account, at)
        publishOut?.(key.account, until - at)
        return undefined
      }
      return reportOf(modifyLedger(updating(key.id, exhausting(key.id, error, at))))
    }

    const reportOf = (step: Step<void>): KeySelector.Reported => (isPending(step) ? step.effect : undefined)

    // A class, not a closure per reservation: one small object on the selection path.
    class Held implements Reservation, Reserved {
      private open = true
      readonly reservation: Reservation = this
      constructor(
        readonly key: Key.Key,
        readonly amount: number
      ) {}
      settle(cost: number): KeySelector.Reported {
        if (!this.open) return
        this.open = false
        share?.settle(this.key.id, this.amount, nanos(cost))
        return reportOf(modifyLedger(adjusting(this.key.id, releasing(this.amount, cost))))
      }
    }

    const now: Now = {
      balances: balancesNow,
      tryReserveBest: tryReserveBestNow,
      reserve: (key, amount) => {
        const held = new Held(key, nanos(amount))
        share?.take(key.id, held.amount)
        const done = modifyLedger(adjusting(key.id, reserving(held.amount)))
        return isPending(done) ? new Pending(Effect.as(done.effect, held)) : held
      },
      exhaust
    }

    return {
      credit,
      balances: (keys, include) => Effect.suspend(() => stepEffect(balancesNow(keys, include))),
      tryReserveBest: (keys, include, amount) =>
        Effect.suspend(() => stepEffect(tryReserveBestNow(keys, include, amount))),
      exhaust: (key, error) =>
        Effect.suspend(() => {
          const done = now.exhaust(key, error)
          return Effect.isEffect(done) ? done : Effect.void
        }),
      now,
      refresh: (key) =>
        Effect.zipRight(
          cache.invalidate(key),
          Effect.sync(() => {
            fresh.delete(key)
            ahead.delete(key)
            scannedUntil = 0
          })
        ),
      snapshot: Effect.map(ledger, (l) =>
        l === undefined
          ? []
          : Object.keys(l).flatMap((id) => {
              const e = l[id]
              return e === undefined ? [] : [entryOf(e)]
            })
      )
    } satisfies Service
  })
