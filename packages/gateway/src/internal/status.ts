/**
 * What `/status` shows and the gauges it shares with `/metrics`: per key, health (the
 * health-aware strategy's ejections and the balancer's Retry-After cooldowns), the end of its
 * cooldown and its credit.
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Monitor from "@or-balancer/core/Monitor"
import type * as StateStore from "@or-balancer/core/StateStore"
import type * as AccountPacing from "@or-balancer/strategies/AccountPacing"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as Gateway from "../Gateway.js"
import * as Clients from "./clients.js"
import * as ClientsFleet from "./clientsFleet.js"
import * as Hedge from "./hedge.js"
import * as Forecast from "./forecast.js"
import type { ServerState } from "./state.js"

const clientRequests = Metric.counter("or_balancer_client_requests_total", {
  description: "Requests admitted per named client"
})
const clientSpend = Metric.gauge("or_balancer_client_spend_usd", {
  description: "USD spent per named client since the gateway started"
})
const clientRemaining = Metric.gauge("or_balancer_client_budget_remaining_usd", {
  description: "USD left of a named client's budget this period (settled and reserved spend taken off)"
})
const clientRefused = Metric.gauge("or_balancer_client_refused", {
  description: "Requests refused per named client, by reason (budget, rate, model)"
})
const exhaustion = Metric.gauge("or_balancer_credit_exhaustion_seconds", {
  description: "Seconds until the key's credit runs out at its current burn rate (+Inf: not burning)"
})
const burn = Metric.gauge("or_balancer_credit_burn_usd_per_minute", {
  description: "USD spent per minute per key over the last five minutes"
})

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
    Forecast.sample(
      state.samples,
      views.map((v) => ({ id: v.key.id, spend: v.stats?.spend ?? 0 })),
      now
    )
    const forecasts = views.map((v) => ({
      burn: Forecast.burnPerMinute(state.samples, v.key.id),
      credit: v.credit ?? null,
      reset: engine.built.resets.get(v.key.id)
    }))
    for (let i = 0; i < views.length; i++) {
      const f = forecasts[i]!
      const id = views[i]!.key.id
      yield* Metric.set(Metric.tagged(burn, "key", id), f.burn)
      // Only a key whose credit is known has a time to exhaustion.
      if (f.credit !== null) {
        const s = Forecast.forecast(f.burn, f.credit, null, now).exhaustionSeconds
        yield* Metric.set(Metric.tagged(exhaustion, "key", id), s ?? Infinity)
      }
    }
    return { stats, views, forecasts, now }
  })

/** Client rows, and their gauges and counters brought up to date. */
const clientViews = (state: ServerState, now: number) =>
  Effect.gen(function* () {
    const engine = state.engine
    if (engine.config.clients.length === 0) return []
    // With Redis, budget rows show the fleet's spend and reservations, not this replica's.
    if (engine.built.fleet !== undefined)
      yield* ClientsFleet.sync(
        engine.built.fleet,
        engine.clientFleet,
        engine.clientLedger,
        engine.config.clients,
        now
      )
    const rows = Clients.views(engine.clientLedger, engine.config.clients, now)
    for (const row of rows) {
      const reported = state.clientRequestsReported.get(row.id) ?? 0
      if (row.requests > reported) {
        yield* Metric.incrementBy(Metric.tagged(clientRequests, "client", row.id), row.requests - reported)
        state.clientRequestsReported.set(row.id, row.requests)
      }
      yield* Metric.set(Metric.tagged(clientSpend, "client", row.id), row.spendUsd)
      if (row.budget !== null)
        yield* Metric.set(Metric.tagged(clientRemaining, "client", row.id), row.budget.remainingUsd)
      for (const reason of ["budget", "rate", "model"] as const)
        yield* Metric.set(
          clientRefused.pipe(Metric.tagged("client", row.id), Metric.tagged("reason", reason)),
          row.refused[reason]
        )
    }
    return rows
  })

/** Brings the credit and cooldown gauges up to date before the metrics are rendered. */
export const refreshGauges = (
  state: ServerState
): Effect.Effect<void, never, Monitor.Monitor | StateStore.StateStore> =>
  Effect.flatMap(keyViews(state), ({ now }) => clientViews(state, now))

export const status = (
  state: ServerState
): Effect.Effect<Gateway.Status, never, Monitor.Monitor | StateStore.StateStore> =>
  Effect.gen(function* () {
    const engine = state.engine
    const { forecasts, now, stats, views } = yield* keyViews(state)
    const clients = yield* clientViews(state, now)
    const accounts = new Map<string, Array<(typeof forecasts)[number]>>()
    views.forEach((v, i) => {
      if (v.key.account === undefined) return
      const list = accounts.get(v.key.account) ?? []
      list.push(forecasts[i]!)
      accounts.set(v.key.account, list)
    })
    const windows = engine.built.pacing === undefined ? [] : yield* engine.built.pacing
    const windowOf = new Map(windows.map((w) => [w.id, w]))
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
        inFlight: stats.inFlight,
        requestErrors: stats.requestErrors,
        hedges: Hedge.counts(engine),
        hedgeAfterMs: Hedge.delayMs(engine)
      },
      clients,
      accounts: Array.from(accounts, ([id, keys]) => ({
        id,
        forecast: publicForecast(Forecast.sumForecast(keys, now)),
        window: publicWindow(windowOf.get(`account:${id}`))
      })),
      keys: views.map(({ key, stats: s, until, credit, creditError, health, reason }, i) => ({
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
        spendUsd: s?.spend ?? 0,
        forecast: publicForecast(
          Forecast.forecast(forecasts[i]!.burn, forecasts[i]!.credit, forecasts[i]!.reset, now)
        )
      }))
    }
  })

const publicForecast = (f: Forecast.Forecast): Gateway.CreditForecast => ({
  burnUsdPerMin: f.burnUsdPerMin,
  exhaustsAt: f.exhaustsAt,
  resetsAt: f.resetsAt
})

const publicWindow = (w: AccountPacing.WindowStatus | undefined): Gateway.AccountWindow | null =>
  w === undefined
    ? null
    : {
        limit: w.limit ?? null,
        exact: w.exact,
        windowMs: w.windowMs ?? null,
        used: w.admitted,
        closedUntil: w.closedUntil === undefined ? null : new Date(w.closedUntil).toISOString(),
        refusals: w.refusals,
        fleet: w.fleet ?? null
      }
