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
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as internal from "./internal/healthAware.js"
import { ns } from "./internal/common.js"
import * as Steps from "./internal/healthSteps.js"

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
> => internal.make(options)

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
