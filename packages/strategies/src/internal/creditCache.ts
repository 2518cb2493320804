// The ledger's cache of `GET /key` answers (see `creditLedger.ts`): each answer written into the
// key's slot, trusted until it expires, and looked up again ahead of that.
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as UpstreamError from "@or-balancer/core/UpstreamError"
import type * as Key from "@or-balancer/core/Key"
import * as Cache from "effect/Cache"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as CreditShare from "../CreditShare.js"
import type { Freshness } from "./creditFreshness.js"
import { type AccountsOut, lookupWithAccount, raised } from "./creditOut.js"
import { empty, nanosOrNull } from "./ledgerSlots.js"
import type { LedgerRecord } from "./ledgerStore.js"

export interface CacheOptions {
  readonly lookup: CreditLookup.Service
  /** A fleet's lookup of each key (absent: this process looks its keys up itself). */
  readonly share: CreditShare.Service | undefined
  readonly accountsOut: AccountsOut
  readonly record: LedgerRecord
  readonly freshness: Freshness
  /** The clock the ledger was built with, for the cache's TTLs. */
  readonly clock: Clock.Clock
  readonly ttl: number
  readonly failureTtl: number
  /** How long after a good answer it is looked up again in the background. */
  readonly aheadMs: number
}

export const makeCache = (
  o: CacheOptions
): Effect.Effect<Cache.Cache<Key.Key, CreditLookup.KeyInfo, UpstreamError.UpstreamError>> => {
  const { accountsOut, freshness, record, share, ttl } = o
  // An answer holds for the TTL, but never past the key's `limit_reset` (00:00 UTC): its cap is
  // whole again then, so an exhausted key is looked up and re-admitted at once, with no 402 first.
  const answerExpiry = (info: CreditLookup.KeyInfo, now: number) =>
    info.limitReset === null ? now + ttl : Math.min(now + ttl, CreditLookup.nextReset(info.limitReset, now))

  // With a management key for the account, spendable is the smaller of the key's and the account's.
  const lookupOf = (key: Key.Key) => lookupWithAccount(o.lookup, key, accountsOut)
  const fetch = (key: Key.Key) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      (share === undefined ? lookupOf(key) : share.lookup(key, lookupOf(key))).pipe(
        Effect.tapBoth({
          onSuccess: (info) =>
            Effect.suspend(() => {
              const until = answerExpiry(info, now)
              freshness.expiry.set(key.id, until)
              // Looked up again in the background once `refreshAhead` of its life has passed.
              freshness.trust(key, until, Math.min(until, now + o.aheadMs))
              const limit = nanosOrNull(info.limit)
              return record.update<void>(key.id, (cur) => {
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
              freshness.expiry.set(key.id, now + o.failureTtl)
              freshness.trust(key, now + o.failureTtl)
              return record.update<void>(key.id, (cur) => [
                undefined,
                // A failed lookup keeps the last known balance; it is not "balance 0".
                { ...(cur ?? { ...empty(key.id), remaining: null }), error: error._tag }
              ])
            })
        })
      )
    )

  return Cache.makeWith({
    capacity: 4096,
    lookup: fetch,
    timeToLive: Exit.match({
      onFailure: () => o.failureTtl,
      onSuccess: (info) => {
        const now = o.clock.unsafeCurrentTimeMillis()
        return Math.max(0, answerExpiry(info, now) - now)
      }
    })
  })
}
