// HealthAware's decision (see `HealthAware.ts`): out keys gated away from the inner selector,
// half-open keys tested by one trial (or a probe first), panic when too much of the pool is out.
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import type { Options, Record } from "../HealthAware.js"
import { HealthShare } from "../HealthShare.js"
import { entriesFor, ns, storeOf, thenFor, thenReport, withKeys } from "./common.js"
import * as Fleet from "./healthFleet.js"
import * as Report from "./healthReport.js"
import * as Steps from "./healthSteps.js"
import {
  afterClaim,
  claimTrial,
  type Claim,
  endTrialStep,
  isDue,
  isHalfOpen,
  isKeyDead,
  isOut
} from "./healthSteps.js"

const NONE: ReadonlyMap<string, Record> = new Map()
const CANCELLED = KeySelector.cancelled()

/** Out for a 429 (the key's or its account's window): back when the window reopens, no trial. */
const isRateLimit = (reason: string | undefined) => reason !== undefined && reason.startsWith("RateLimited")

export const make = (
  options: Options
): Effect.Effect<
  KeySelector.Service,
  never,
  KeySelector.KeySelector | KeyPool.KeyPool | StateStore.StateStore
> =>
  Effect.gen(function* () {
    const inner = yield* KeySelector.KeySelector
    const pool = yield* KeyPool.KeyPool
    const store = yield* StateStore.StateStore
    const lookup =
      options.recovery === "probe"
        ? yield* Effect.serviceOption(CreditLookup.CreditLookup)
        : Option.none<CreditLookup.Service>()
    const threshold = Math.max(1, options.failureThreshold ?? 3)
    const base = Duration.toMillis(options.baseCooldown ?? Duration.seconds(5))
    const max = Duration.toMillis(options.maxCooldown ?? Duration.minutes(5))
    const panicThreshold = options.panicThreshold ?? 0.5
    // Without a CreditLookup to probe with, recovery falls back to a trial request.
    const trial = Option.isNone(lookup)
    const st = storeOf(store)
    const clock = yield* Effect.clock
    const share = Option.getOrUndefined(yield* Effect.serviceOption(HealthShare))

    const { probe, record } = Report.make({
      store,
      st,
      pool,
      clock,
      share,
      steps: Steps.make({ threshold, base, max })
    })

    // The store hands back the same entries until they change: so is the map built from them.
    let lastEntries: ReadonlyArray<readonly [string, Record]> | undefined
    let lastMap: ReadonlyMap<string, Record> = NONE
    const recordsOf = (entries: ReadonlyArray<readonly [string, Record]>): ReadonlyMap<string, Record> => {
      if (entries !== lastEntries) {
        lastEntries = entries
        lastMap = entries.length === 0 ? NONE : new Map(entries)
      }
      return lastMap
    }

    const wrap = (lease: KeySelector.Lease, trialLease: boolean): KeySelector.Lease => {
      const key = lease.key
      return KeySelector.lease(key, (outcome) => {
        if (trialLease && share !== undefined) share.endTrial(key.id, outcome._tag === "Success")
        return thenReport(
          outcome._tag === "Success"
            ? record(key, undefined)
            : outcome._tag === "Failure"
              ? record(key, outcome.error)
              : // A half-open trial that ends without a verdict frees the slot for the next one.
                trialLease
                ? st.update<Record>(ns.health, key.id, endTrialStep)
                : undefined,
          lease,
          outcome
        )
      })
    }
    const plain = (lease: KeySelector.Lease) => wrap(lease, false)
    const plainOrRefusal = (
      _: unknown,
      d: KeySelector.Lease | KeySelector.NoKeyAvailable
    ): KeySelector.Decision => (KeySelector.isNoKeyAvailable(d) ? d : plain(d))

    // The request the inner selector sees: out keys gated away; in panic, only dead keys (401, 402).
    const narrow = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      records: ReadonlyMap<string, Record>,
      now: number
    ): KeySelector.SelectRequest => {
      if (records.size === 0) return request
      if (inPanic(keys, records, now))
        // Panic ignores health, but not a key's own refusal (revoked, out of credit): it would
        // only refuse again, once per request in flight (issue 14: a revoked key took hundreds).
        return KeySelector.withGate(request, (k) => {
          const r = records.get(k.id)
          return isOut(r, now) && isKeyDead(r!.reason) ? { reason: "unhealthy", until: r!.until } : undefined
        })
      return KeySelector.withGate(request, (k) => {
        const r = records.get(k.id)
        if (r === undefined || r.until === undefined) return undefined
        if (r.until > now) return { reason: "unhealthy", until: r.until }
        // A rate limit's window has reopened: nothing to test (one trial at a time would fail every
        // other request waiting for the window with a 503).
        if (isRateLimit(r.reason)) return undefined
        // Half-open: with trials, one request at a time; with probes, not before the probe says so.
        return trial && r.testing !== true ? undefined : { reason: "unhealthy" }
      })
    }
    const inPanic = (keys: ReadonlyArray<Key.Key>, records: ReadonlyMap<string, Record>, now: number) => {
      let out = 0
      for (const k of keys) if (isOut(records.get(k.id), now)) out++
      return out / keys.length > panicThreshold
    }
    const needsTrial = (key: Key.Key, records: ReadonlyMap<string, Record>, now: number) =>
      trial && isHalfOpen(records.get(key.id), now) && !isRateLimit(records.get(key.id)!.reason)

    const choose = (
      request: KeySelector.SelectRequest,
      keys: ReadonlyArray<Key.Key>,
      records: ReadonlyMap<string, Record>,
      now: number
    ): KeySelector.Decision => {
      const narrowed = narrow(request, keys, records, now)
      return KeySelector.andThen(inner.decide(narrowed), (picked) => {
        if (KeySelector.isNoKeyAvailable(picked)) return picked
        if (!needsTrial(picked.key, records, now)) return plain(picked)
        // The trial slot is claimed atomically: the gate read the records before the inner
        // selector ran, and another selection may have claimed the slot while it waited.
        return st.modify<Record, Claim>(ns.health, picked.key.id, claimTrial, (claim) => {
          // In panic the gate keeps only dead keys out, not a taken trial: take the key plainly.
          const next = afterClaim(claim, narrowed !== request && !inPanic(keys, records, now))
          return next === "trial"
            ? share === undefined
              ? wrap(picked, true)
              : fleetTrial(request, picked, share)
            : next === "plain"
              ? plain(picked)
              : KeySelector.giveBack(picked, CANCELLED, () => decide(request))
        })
      })
    }

    // The fleet's one trial slot: without it the key stays out here for `trialMs`, then is asked
    // about again; the local claim is given up either way.
    const fleetTrial = (
      request: KeySelector.SelectRequest,
      picked: KeySelector.Lease,
      fleet: HealthShare["Type"]
    ): KeySelector.Decision =>
      KeySelector.waitFor(fleet.tryTrial(picked.key.id), (got) =>
        got
          ? wrap(picked, true)
          : st.modify<Record, void>(
              ns.health,
              picked.key.id,
              Fleet.lostTrial(clock.unsafeCurrentTimeMillis() + fleet.trialMs),
              () => KeySelector.giveBack(picked, CANCELLED, () => decide(request))
            )
      )

    if (share !== undefined) {
      const unregister = Fleet.register(share, st, pool, clock)
      const scope = yield* Effect.serviceOption(Scope.Scope)
      if (Option.isSome(scope)) yield* Scope.addFinalizer(scope.value, Effect.sync(unregister))
    }

    const decideOn = (
      request: KeySelector.SelectRequest,
      entries: ReadonlyArray<readonly [string, Record]>
    ): KeySelector.Decision => {
      // No record: every key is healthy, so there is nothing to gate and no clock to read.
      if (entries.length === 0) return thenFor(inner.decide(request), undefined, plainOrRefusal)
      const current = recordsOf(entries)
      return withKeys(pool, (keys) => {
        const now = clock.unsafeCurrentTimeMillis()
        if (Option.isNone(lookup) || !keys.some((k) => isDue(current.get(k.id), now)))
          return choose(request, keys, current, now)
        // Probes are due: run them first (nothing taken yet), then choose on what they found.
        return KeySelector.waitFor(probe(lookup.value, keys, current, now), () =>
          st.entries<Record>(ns.health, (after) =>
            choose(request, keys, recordsOf(after), clock.unsafeCurrentTimeMillis())
          )
        )
      })
    }
    const decide = (request: KeySelector.SelectRequest): KeySelector.Decision =>
      entriesFor(store, ns.health, request, decideOn)
    return KeySelector.fromDecide(decide)
  })
