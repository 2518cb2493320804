// The ledger's implementation (see `CreditLedger.ts`): the selection path (`now`) answers at once
// over a store with synchronous forms when no lookup is due; the Effect forms are derived from it.
// Its parts: the stored slots (`ledgerSlots`), the record in the store (`ledgerStore`), the lookup
// cache (`creditCache`) and its freshness (`creditFreshness`), reservations (`creditReserve`),
// keys and accounts out (`creditOut`), a fleet's share (`creditShared`).
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as CreditLedger from "../CreditLedger.js"
import { CreditShare } from "../CreditShare.js"
import { makeCache } from "./creditCache.js"
import { Freshness } from "./creditFreshness.js"
import { AccountsOut, exhausting } from "./creditOut.js"
import { Held, type Holder, reportOf, reservingBest } from "./creditReserve.js"
import { shareAccountsOut } from "./healthFleet.js"
import { withinShare } from "./creditShared.js"
import { isPending, Pending, stepEffect } from "./creditStep.js"
import { availableOf, entryOf, type Ledger, nanos, type Slot, usdOrNull } from "./ledgerSlots.js"
import { ledgerRecord, updating } from "./ledgerStore.js"

type Balances = CreditLedger.Balances
type Now = CreditLedger.Now
type Reserved = CreditLedger.Reserved
type Service = CreditLedger.Service
type Step<A> = CreditLedger.Step<A>

export { decideWith, isPending, Pending, stepEffect } from "./creditStep.js"

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
    const accountsOut = new AccountsOut(Duration.toMillis(options.accountRecheck ?? Duration.seconds(60)))
    // With a fleet (`HealthShare`), accounts out are shared; else this process's own.
    const publishOut = yield* shareAccountsOut(accountsOut)
    // Background refreshes run on the runtime the ledger was built in (its clock included).
    const background = Runtime.runFork(yield* Effect.runtime<never>())
    const record = ledgerRecord(store)
    const holder: Holder = { record, share }

    // Still trusted, but due soon: looked up again off the selection path (single-flight per key;
    // the cache serves the old answer meanwhile), so no selection waits for it at expiry.
    const freshness = new Freshness((key, done) => {
      background(Effect.ensuring(Effect.ignore(cache.refresh(key)), Effect.sync(done)))
    })
    const cache = yield* makeCache({
      lookup,
      share,
      accountsOut,
      record,
      freshness,
      clock,
      ttl,
      failureTtl: Duration.toMillis(options.failureTtl ?? Duration.seconds(5)),
      aheadMs: ttl * Math.min(1, Math.max(0, options.refreshAhead ?? 0.8))
    })
    const expiry = freshness.expiry

    const liveOf = (e: Slot | undefined) =>
      e === undefined || e.lookedUpAt === undefined ? undefined : usdOrNull(availableOf(e))

    const credit: Service["credit"] = (key) =>
      cache.get(key).pipe(
        Effect.ignore,
        Effect.zipRight(record.get),
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
    // With no account out, a record's balances read it live: one object per record, not per selection.
    let lastRecord: Ledger | undefined
    let lastBalances: Balances | undefined
    const balancesOf = (l: Ledger | undefined): Balances => {
      if (!accountsOut.any) {
        if (l === lastRecord && lastBalances !== undefined) return lastBalances
        lastRecord = l
        lastBalances = {
          available: l === undefined ? () => undefined : (key) => liveOf(l[key.id]),
          refreshAt: refreshAtIn(l, 0)
        }
        return lastBalances
      }
      // An account out of credit: its keys have none, whatever their own balances.
      const t = clock.unsafeCurrentTimeMillis()
      return {
        available: (key) =>
          accountsOut.untilOf(key, t) !== undefined ? 0 : l === undefined ? undefined : liveOf(l[key.id]),
        refreshAt: refreshAtIn(l, t)
      }
    }

    // `then` after looking up the stale keys; while nothing is stale (nearly always), at once.
    // The clock is the one the ledger was built with, as the cache's is.
    const afterRefresh = <A>(
      keys: ReadonlyArray<Key.Key>,
      include: (key: Key.Key) => boolean,
      then: () => Step<A>
    ): Step<A> => {
      const stale = freshness.staleOf(keys, include, clock.unsafeCurrentTimeMillis())
      if (stale === undefined) return then()
      // One at a time, as `credit` per key did; the cache makes concurrent selections share a lookup.
      return new Pending(
        Effect.zipRight(
          Effect.forEach(stale, (k) => Effect.ignore(cache.get(k)), { discard: true }),
          Effect.suspend(() => stepEffect(then()))
        )
      )
    }

    const readBalances = (): Step<Balances> => {
      const l = record.read()
      return isPending(l) ? new Pending(Effect.map(l.effect, balancesOf)) : balancesOf(l)
    }
    // Nothing stale (nearly always): straight to the record, no thunk for `afterRefresh`.
    const balancesNow: Now["balances"] = (keys, include) =>
      freshness.staleOf(keys, include, clock.unsafeCurrentTimeMillis()) === undefined
        ? readBalances()
        : afterRefresh(keys, include, readBalances)

    const tryReserveBestNow: Now["tryReserveBest"] = (keys, include0, amount, until) => {
      const include = accountsOut.any
        ? accountsOut.including(include0, clock.unsafeCurrentTimeMillis())
        : include0
      return share === undefined
        ? tryReserveBestLocal(keys, include, amount)
        : withinShare(
            share,
            keys,
            include,
            nanos(amount),
            (gate) => tryReserveBestLocal(keys, include, amount, gate),
            until
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
      const reserve = reservingBest(holder, keys, gate, nanos(amount))
      // Nothing stale (nearly always): straight to the store, no thunk for `afterRefresh`.
      return freshness.staleOf(keys, include, clock.unsafeCurrentTimeMillis()) === undefined
        ? record.modify(reserve)
        : afterRefresh(keys, include, () => record.modify(reserve))
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
      return reportOf(record.modify(updating(key.id, exhausting(key.id, error, at))))
    }

    const now: Now = {
      balances: balancesNow,
      tryReserveBest: tryReserveBestNow,
      reserve: (key, amount) => {
        const held = new Held(key, nanos(amount), holder)
        // Nothing to hold (no estimate): the settlement alone records the cost.
        if (held.amount === 0 && share === undefined) return held
        share?.take(key.id, held.amount)
        const done = record.reserve(key.id, held.amount)
        return isPending(done) ? new Pending(Effect.as(done.effect, held)) : held
      },
      exhaust
    }

    return {
      credit,
      balances: (keys, include) => Effect.suspend(() => stepEffect(balancesNow(keys, include))),
      tryReserveBest: (keys, include, amount, until) =>
        Effect.suspend(() => stepEffect(tryReserveBestNow(keys, include, amount, until))),
      exhaust: (key, error) =>
        Effect.suspend(() => {
          const done = now.exhaust(key, error)
          return Effect.isEffect(done) ? done : Effect.void
        }),
      now,
      refresh: (key) =>
        Effect.zipRight(
          cache.invalidate(key),
          Effect.sync(() => freshness.forget(key))
        ),
      snapshot: Effect.map(record.get, (l) =>
        l === undefined
          ? []
          : Object.keys(l).flatMap((id) => {
              const e = l[id]
              return e === undefined ? [] : [entryOf(e)]
            })
      )
    } satisfies Service
  })
