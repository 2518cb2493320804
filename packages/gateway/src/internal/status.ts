/**
 * What `/status` shows and the gauges it shares with `/metrics`: per key, health (the
 * health-aware strategy's ejections and the balancer's Retry-After cooldowns), the end of its
 * cooldown and its credit.
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Monitor from "@or-balancer/core/Monitor"
import type * as StateStore from "@or-balancer/core/StateStore"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Gateway from "../Gateway.js"
import type { ServerState } from "./state.js"

/**
 * What is known of each key right now: health, the end of its cooldown, and its credit (the
 * ledger's live balance when the stack keeps one, else the monitor's last report). Also written
 * to the monitor's credit and cooldown gauges, so `/metrics` carries them and a cooldown that has
 * ended reads 0 again.
 */
const keyViews = (state: ServerState) =>
  Effect.gen(function* () {
    const engine = state.engine
    const monitor = yield* Monitor.Monitor
    const stats = yield* monitor.stats
    const keys = yield* engine.built.pool.get
    const cooldowns = yield* engine.built.balancer.cooldowns
    const health = yield* HealthAware.status().pipe(Effect.provideService(KeyPool.KeyPool, engine.built.pool))
    const ledger = engine.built.ledger === undefined ? [] : yield* engine.built.ledger.snapshot
    const now = yield* Clock.currentTimeMillis
    const byId = new Map(stats.keys.map((k) => [k.id, k]))
    const healthById = new Map(health.keys.map((h) => [h.id, h]))
    const creditById = new Map(ledger.map((e) => [e.id, e]))
    const views = keys.map((key) => {
      const h = healthById.get(key.id)
      let until = h?.state === "ejected" ? h.until : undefined
      for (const c of cooldowns) {
        if ((c.scope === "key" && c.id === key.id) || (c.scope === "account" && c.id === key.account)) {
          until = until === undefined ? c.until : Math.max(until, c.until)
        }
      }
      if (until !== undefined && until <= now) until = undefined
      const entry = creditById.get(key.id)
      // A failed lookup (a revoked key) has no balance to show: its error is shown instead.
      const credit =
        entry !== undefined && entry.error === undefined && entry.lookedUpAt !== undefined
          ? entry.available
          : (byId.get(key.id)?.credit ?? null)
      const healthState: Gateway.KeyHealth =
        h?.state === "ejected" ? "ejected" : until !== undefined ? "cooling" : (h?.state ?? "healthy")
      // Why the health-aware strategy ejected it (an error tag such as `ServerError`).
      const reason = healthState === "ejected" ? h?.reason : undefined
      return {
        key,
        stats: byId.get(key.id),
        until,
        credit,
        creditError: entry?.error,
        health: healthState,
        reason
      }
    })
    for (const v of views) {
      if (v.credit !== null && v.credit !== undefined) yield* monitor.credit(v.key, v.credit)
      yield* monitor.cooldown(v.key, v.until)
    }
    return { stats, views }
  })

/** Brings the credit and cooldown gauges up to date before the metrics are rendered. */
export const refreshGauges = (
  state: ServerState
): Effect.Effect<void, never, Monitor.Monitor | StateStore.StateStore> => Effect.asVoid(keyViews(state))

export const status = (
  state: ServerState
): Effect.Effect<Gateway.Status, never, Monitor.Monitor | StateStore.StateStore> =>
  Effect.gen(function* () {
    const engine = state.engine
    const { stats, views } = yield* keyViews(state)
    return {
      status: state.draining ? "draining" : "ok",
      generation: state.generation,
      inFlightRequests: state.active,
      strategy: engine.config.strategy.map((s) => s.name),
      totals: {
        requests: stats.requests,
        successes: stats.successes,
        failures: stats.failures,
        retries: stats.retries,
        spendUsd: stats.spend,
        inFlight: stats.inFlight
      },
      keys: views.map(({ key, stats: s, until, credit, creditError, health, reason }) => ({
        id: key.id,
        account: key.account ?? null,
        weight: key.weight,
        health,
        reason: reason ?? null,
        coolingUntil: until === undefined ? null : new Date(until).toISOString(),
        credit: credit ?? null,
        creditTracked: engine.built.ledger !== undefined || (s?.credit ?? undefined) !== undefined,
        creditError: creditError ?? null,
        inFlight: s?.inFlight ?? 0,
        maxConcurrency: key.maxConcurrency ?? null,
        requests: s?.requests ?? 0,
        successes: s?.successes ?? 0,
        failures: s?.failures ?? 0,
        errors: s?.errors ?? {},
        errorRate: s?.errorRate ?? 0,
        latencyMs: s?.latencyMs ?? { p50: 0, p99: 0, mean: 0, max: 0 },
        spendUsd: s?.spend ?? 0
      }))
    }
  })
