/**
 * Health-aware (a decorator): tracks each key's outcomes and takes sick keys out.
 *
 * - A failure that counts against the key (`UpstreamError.countsAgainstKey`: 401, 402, 429, 5xx,
 *   timeouts; never 400/403/404) adds to its consecutive failures; at `failureThreshold` the key
 *   is ejected. A 401 or 402 (disposition `eject`) ejects at once; a key refused for its own limit
 *   with a known reset (403 `resets_at`, or a probe's `limit_reset`) is out until then, and a 402
 *   for the account's credits (`openrouter_credits`) takes every key of the account out.
 * - The cooldown is `baseCooldown`, doubling with each ejection in a row, up to `maxCooldown`;
 *   a `Retry-After` sets it directly, capped by `maxCooldown` too (one header saying "999999"
 *   must not take a key out for days: after the cap the key is half-open and tested again). A 429
 *   with scope `account` ejects every key of that account.
 * - When the cooldown ends the key is half-open: with `recovery: "trial"` one request is let
 *   through and its outcome closes the key (back to healthy, doubling reset) or ejects it again;
 *   with `recovery: "probe"` a free `CreditLookup` call (OpenRouter's `GET /key`) decides before
 *   any paid traffic (a key with nothing left under its limit stays out until its `limit_reset`).
 * - Panic: when more than `panicThreshold` of the pool is out, health is ignored and traffic is
 *   spread across every key rather than piled on the last healthy one.
 *
 * Division of labour with the core `Balancer`: the Balancer enforces `Retry-After` cooldowns (per
 * key, or per account) through its own gate whatever the stack. This decorator records them too,
 * so `status` shows who is out and why, and it alone does consecutive-failure ejection, doubling,
 * half-open recovery and panic.
 *
 * The state lives in the `StateStore` (namespace `or-balancer/health`); read it with {@link status}.
 *
 * Across replicas (an optional `HealthShare`): ejections and cooldowns are published to the fleet,
 * the fleet's merged in (only ever extending); a half-open trial also needs the fleet's one trial
 * slot (without it the key stays out for `trialMs`). The decision is synchronous but when a probe
 * is due: it then answers a `Wait` that runs the probes, having changed nothing.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Scope from "effect/Scope"
import { HealthShare } from "./HealthShare.js"
import * as Fleet from "./internal/healthFleet.js"
import * as Steps from "./internal/healthSteps.js"
import {
  afterClaim,
  claimTrial,
  endTesting,
  endTrialStep,
  isDue,
  isHalfOpen,
  isKeyDead,
  isOut,
  type Claim,
  type Step,
  waitOf
} from "./internal/healthSteps.js"
import { entriesFor, ns, storeOf, thenFor, thenReport, withKeys } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** Consecutive failures that eject a key. Default 3. */
  readonly failureThreshold?: number | undefined
  /** First cooldown. Default 5 seconds. */
  readonly baseCooldown?: Duration.DurationInput | undefined
  /** Longest cooldown. Default 5 minutes. */
  readonly maxCooldown?: Duration.DurationInput | undefined
  /** How a half-open key is tested. Default "trial". "probe" needs a `CreditLookup`. */
  readonly recovery?: "trial" | "probe" | undefined
  /** Share of the pool (0..1) out above which health is ignored. Default 0.5. */
  readonly panicThreshold?: number | undefined
}

/**
 * One key's record as stored; absent means healthy with no recent failures.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Record {
  readonly failures: number
  /** Ejections in a row (reset by a success); the cooldown doubles with each. */
  readonly ejections: number
  /** While set, the key is out until then (epoch ms), then half-open. */
  readonly until?: number | undefined
  /** Why it was ejected: the error's tag, e.g. `RateLimited (account acme)`. */
  readonly reason?: string | undefined
  /** A half-open trial or probe is in flight. */
  readonly testing?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface KeyHealth {
  readonly id: string
  readonly state: "healthy" | "ejected" | "half-open"
  readonly consecutiveFailures: number
  readonly ejections: number
  readonly until: number | undefined
  readonly reason: string | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Status {
  readonly keys: ReadonlyArray<KeyHealth>
  /** More than the panic threshold is out: health is being ignored. */
  readonly panic: boolean
}

const NONE: ReadonlyMap<string, Record> = new Map()

/** Out for a 429 (the key's or its account's window): back when the window reopens, no trial. */
const isRateLimit = (reason: string | undefined) => reason !== undefined && reason.startsWith("RateLimited")

/**
 * The health of every key in the pool. Panic is judged against `panicThreshold` (default 0.5).
 *
 * @since 0.1.0
 * @category Accessors
 */
export const status = (
  panicThreshold = 0.5
): Effect.Effect<Status, never, StateStore.StateStore | KeyPool.KeyPool> =>
  Effect.gen(function* () {
    const store = yield* StateStore.StateStore
    const keys = yield* (yield* KeyPool.KeyPool).get
    const records = new Map(yield* store.entries<Record>(ns.health))
    return Steps.statusOf(keys, records, yield* Clock.currentTimeMillis, panicThreshold)
  })

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
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

    // With a fleet: a step that takes the key out (or further out) is published to it.
    const publishing = (keyId: string, step: Step, now: number, cooldown: boolean): Step =>
      share === undefined ? step : Fleet.publishing(share, keyId, step, now, cooldown)

    const { failed, accountWide } = Steps.make({ threshold, base, max })

    // --- Reports: each a plain function over a store with synchronous forms ------------------

    const record = (key: Key.Key, error: UpstreamError.UpstreamError | undefined): KeySelector.Reported => {
      // A success needs no clock: it clears the record.
      if (error === undefined) return st.set(ns.health, key.id, undefined)
      if (!UpstreamError.countsAgainstKey(error)) return st.update<Record>(ns.health, key.id, endTesting)
      const now = clock.unsafeCurrentTimeMillis()
      const cooldown = waitOf(error) !== undefined
      const self = st.update<Record>(ns.health, key.id, publishing(key.id, failed(error, now), now, cooldown))
      const cool0 = accountWide(key, error, now)
      const cool =
        cool0 === undefined
          ? undefined
          : { covers: cool0.covers, step: (k: Key.Key) => publishing(k.id, cool0.step, now, true) }
      if (cool === undefined) return self
      const get = pool.unsafeGet
      if (get === undefined) {
        return Effect.zipRight(
          Effect.isEffect(self) ? self : Effect.void,
          Effect.flatMap(pool.get, (keys) =>
            Effect.forEach(
              keys.filter(cool.covers),
              (k) => store.modify<Record, void>(ns.health, k.id, cool.step(k)),
              {
                discard: true
              }
            )
          )
        )
      }
      let out = self
      for (const k of get()) {
        if (cool.covers(k))
          out = KeySelector.andReport(out, () => st.update<Record>(ns.health, k.id, cool.step(k)))
      }
      return out
    }

    // Free probes for keys whose cooldown ended: one per key at a time, before any paid request.
    const probe = (
      service: CreditLookup.Service,
      keys: ReadonlyArray<Key.Key>,
      records: ReadonlyMap<string, Record>,
      now: number
    ): Effect.Effect<void> =>
      Effect.forEach(
        keys.filter((k) => isDue(records.get(k.id), now)),
        (k) =>
          Effect.flatMap(
            store.modify<Record, boolean>(ns.health, k.id, (r) =>
              r === undefined || r.testing === true ? [false, r] : [true, { ...r, testing: true }]
            ),
            (claimed) =>
              claimed
                ? Effect.flatMap(Effect.either(service.lookup(k)), (result) =>
                    Effect.suspend(() => {
                      const done = record(
                        k,
                        result._tag === "Right"
                          ? Steps.probeVerdict(result.right, clock.unsafeCurrentTimeMillis())
                          : result.left
                      )
                      return Effect.isEffect(done) ? done : Effect.void
                    })
                  )
                : Effect.void
          ),
        { concurrency: "unbounded", discard: true }
      )

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

const CANCELLED = KeySelector.cancelled()

/**
 * Requires the inner `KeySelector`; with `recovery: "probe"`, also uses a `CreditLookup` if one
 * is provided.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<
  KeySelector.KeySelector,
  never,
  KeySelector.KeySelector | KeyPool.KeyPool | StateStore.StateStore
> => Layer.scoped(KeySelector.KeySelector, make(options))
