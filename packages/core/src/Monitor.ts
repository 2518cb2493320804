/**
 * Where traffic and money went: per-key request counts by outcome, latency, error rate,
 * in-flight, spend, credit and cooldowns, as Effect `Metric`s tagged by key id (never by secret)
 * plus a `stats` snapshot. Memory is constant in the number of requests: counters and a
 * fixed-size histogram per key.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"
import * as Histogram from "./internal/histogram.js"
import type * as Key from "./Key.js"
import type * as KeySelector from "./KeySelector.js"
import * as UpstreamError from "./UpstreamError.js"

const keys = {
  requests: MetricKey.counter("or_balancer_requests_total", {
    description: "Upstream attempts by key and outcome",
    incremental: true
  }),
  latency: MetricKey.histogram(
    "or_balancer_request_latency_ms",
    MetricBoundaries.exponential({ start: 5, factor: 2, count: 14 }),
    "Upstream attempt latency in milliseconds"
  ),
  inFlight: MetricKey.gauge("or_balancer_in_flight", { description: "Attempts in flight per key" }),
  spend: MetricKey.counter("or_balancer_spend_usd_total", { description: "Reported cost in USD per key" }),
  credit: MetricKey.gauge("or_balancer_credit_remaining_usd", {
    description: "Known remaining credit per key"
  }),
  cooling: MetricKey.gauge("or_balancer_cooldown", {
    description: "1 while a key is cooling down or ejected"
  }),
  retries: MetricKey.counter("or_balancer_retries_total", {
    description: "Retries across all keys",
    incremental: true
  }),
  requestErrors: MetricKey.counter("or_balancer_request_errors_total", {
    description:
      "Requests the upstream refused as the caller's fault (bad request, unknown model), by reason",
    incremental: true
  })
} as const

/**
 * The Effect metrics the monitor updates. Read them with `Metric.value` (tagged by `key`, and
 * `outcome` for requests), or export them with any metrics reporter; the gateway renders them as
 * Prometheus text.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const metrics = {
  requests: Metric.fromMetricKey(keys.requests),
  latency: Metric.fromMetricKey(keys.latency),
  inFlight: Metric.fromMetricKey(keys.inFlight),
  spend: Metric.fromMetricKey(keys.spend),
  credit: Metric.fromMetricKey(keys.credit),
  cooling: Metric.fromMetricKey(keys.cooling),
  retries: Metric.fromMetricKey(keys.retries),
  requestErrors: Metric.fromMetricKey(keys.requestErrors)
} as const

// `Metric.tagged` re-derives the tagged key (allocate, hash, registry lookup) on every update; a
// metric made from an already-tagged key resolves its registry hook once. So per-key metrics are
// built once per key from tagged keys, and updated synchronously (`unsafeUpdate`) on the hot path.
const tagged = <Type extends MetricKeyType.MetricKeyType<any, any>>(
  key: MetricKey.MetricKey<Type>,
  ...labels: ReadonlyArray<readonly [string, string]>
) =>
  Metric.fromMetricKey(
    MetricKey.taggedWithLabels(
      key,
      labels.map(([k, v]) => MetricLabel.make(k, v))
    )
  )

const noTags: ReadonlyArray<MetricLabel.MetricLabel> = []
const retriesMetric = metrics.retries

/**
 * @since 0.1.0
 * @category Models
 */
export interface KeyStats {
  readonly id: string
  readonly account: string | undefined
  readonly requests: number
  readonly successes: number
  readonly failures: number
  /** Failures by error tag (`RateLimited`, `ServerError`, ...). */
  readonly errors: Readonly<Record<string, number>>
  /** This key's share of all attempts, 0..1. */
  readonly share: number
  readonly errorRate: number
  readonly inFlight: number
  readonly latencyMs: {
    readonly p50: number
    readonly p99: number
    readonly mean: number
    readonly max: number
  }
  readonly spend: number
  /** Last known remaining credit in USD; null means unlimited; undefined means never looked up. */
  readonly credit: number | null | undefined
  /** Epoch millis until which the key is cooling down or ejected, if it is. */
  readonly coolingUntil: number | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Stats {
  readonly requests: number
  readonly successes: number
  readonly failures: number
  readonly retries: number
  readonly spend: number
  readonly inFlight: number
  /** Answers that were the caller's fault (bad request, unknown model), by error tag: no key's failures. */
  readonly requestErrors: Readonly<Record<string, number>>
  readonly keys: ReadonlyArray<KeyStats>
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly started: (key: Key.Key) => Effect.Effect<void>
  readonly finished: (key: Key.Key, outcome: KeySelector.Outcome) => Effect.Effect<void>
  readonly retried: Effect.Effect<void>
  readonly credit: (key: Key.Key, remaining: number | null) => Effect.Effect<void>
  readonly cooldown: (key: Key.Key, until: number | undefined) => Effect.Effect<void>
  readonly stats: Effect.Effect<Stats>
  /**
   * `started` and `finished`, synchronous: the balancer's fiber-free first attempt
   * (`Balancer.unsafeStart`) needs them. A monitor without them turns that path off.
   */
  readonly unsafeStarted?: ((key: Key.Key) => void) | undefined
  readonly unsafeFinished?: ((key: Key.Key, outcome: KeySelector.Outcome) => void) | undefined
}

/**
 * @since 0.1.0
 * @category Context
 */
export class Monitor extends Context.Tag("@or-balancer/core/Monitor")<Monitor, Service>() {}

interface Entry {
  readonly id: string
  readonly account: string | undefined
  requests: number
  successes: number
  failures: number
  readonly errors: Record<string, number>
  inFlight: number
  spend: number
  credit: number | null | undefined
  coolingUntil: number | undefined
  readonly latency: Histogram.Histogram
  // Metrics tagged once per key: tagging allocates, so it is kept off the per-request path.
  readonly m: {
    readonly success: Metric.Metric.Counter<number>
    readonly latency: Metric.Metric.Histogram<number>
    readonly inFlight: Metric.Metric.Gauge<number>
    readonly spend: Metric.Metric.Counter<number>
    readonly credit: Metric.Metric.Gauge<number>
    readonly cooling: Metric.Metric.Gauge<number>
  }
  readonly failureMetrics: Map<string, Metric.Metric.Counter<number>>
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<Service> = Effect.sync(() => {
  const entries = new Map<string, Entry>()
  let retries = 0
  const requestErrors: Record<string, number> = {}
  const entry = (key: Key.Key): Entry => {
    let e = entries.get(key.id)
    if (e === undefined) {
      e = {
        id: key.id,
        account: key.account,
        requests: 0,
        successes: 0,
        failures: 0,
        errors: {},
        inFlight: 0,
        spend: 0,
        credit: undefined,
        coolingUntil: undefined,
        latency: Histogram.make(),
        m: {
          success: tagged(keys.requests, ["key", key.id], ["outcome", "success"]),
          latency: tagged(keys.latency, ["key", key.id]),
          inFlight: tagged(keys.inFlight, ["key", key.id]),
          spend: tagged(keys.spend, ["key", key.id]),
          credit: tagged(keys.credit, ["key", key.id]),
          cooling: tagged(keys.cooling, ["key", key.id])
        },
        failureMetrics: new Map()
      }
      entries.set(key.id, e)
    }
    return e
  }
  const failureMetric = (e: Entry, tag: string) => {
    let m = e.failureMetrics.get(tag)
    if (m === undefined) {
      m = tagged(keys.requests, ["key", e.id], ["outcome", tag])
      e.failureMetrics.set(tag, m)
    }
    return m
  }
  // Attempts report `Duration.millis(...)`: read it directly (`Duration.toMillis` goes through
  // `dual` and `decode`, a few % of a composed stack's select and settle).
  const millisOf = (d: Duration.Duration): number =>
    d.value._tag === "Millis" ? d.value.millis : Duration.toMillis(d)
  const requestErrorMetrics = new Map<string, Metric.Metric.Counter<number>>()
  const requestErrorMetric = (reason: string) => {
    let m = requestErrorMetrics.get(reason)
    if (m === undefined) {
      m = tagged(keys.requestErrors, ["reason", reason])
      requestErrorMetrics.set(reason, m)
    }
    return m
  }
  const unsafeStarted = (key: Key.Key): void => {
    const e = entry(key)
    e.inFlight++
    e.m.inFlight.unsafeUpdate(e.inFlight, noTags)
  }
  const unsafeFinished = (key: Key.Key, outcome: KeySelector.Outcome): void => {
    const e = entry(key)
    e.inFlight = Math.max(0, e.inFlight - 1)
    e.m.inFlight.unsafeUpdate(e.inFlight, noTags)
    // No verdict (interrupted, never used): out of flight, but not a request of the key's.
    if (outcome._tag === "Cancelled") return
    // The caller's fault (400, unknown model): no request, failure or latency of the key's, only
    // the key-less `or_balancer_request_errors_total{reason}`.
    if (outcome._tag === "Failure" && !UpstreamError.countsAgainstKey(outcome.error)) {
      requestErrorMetric(outcome.error._tag).unsafeUpdate(1, noTags)
      requestErrors[outcome.error._tag] = (requestErrors[outcome.error._tag] ?? 0) + 1
      return
    }
    e.requests++
    const ms = millisOf(outcome.latency)
    Histogram.record(e.latency, ms)
    e.m.latency.unsafeUpdate(ms, noTags)
    if (outcome._tag === "Success") {
      e.successes++
      const cost = outcome.cost ?? 0
      e.spend += cost
      if (typeof e.credit === "number") e.credit -= cost
      e.m.success.unsafeUpdate(1, noTags)
      if (cost > 0) e.m.spend.unsafeUpdate(cost, noTags)
      return
    }
    e.failures++
    const tag = outcome.error._tag
    e.errors[tag] = (e.errors[tag] ?? 0) + 1
    failureMetric(e, tag).unsafeUpdate(1, noTags)
  }
  return Monitor.of({
    started: (key) => Effect.sync(() => unsafeStarted(key)),
    finished: (key, outcome) => Effect.sync(() => unsafeFinished(key, outcome)),
    unsafeStarted,
    unsafeFinished,
    retried: Effect.sync(() => {
      retries++
      retriesMetric.unsafeUpdate(1, noTags)
    }),
    credit: (key, remaining) =>
      Effect.sync(() => {
        const e = entry(key)
        e.credit = remaining
        if (remaining !== null) e.m.credit.unsafeUpdate(remaining, noTags)
      }),
    cooldown: (key, until) =>
      Effect.sync(() => {
        const e = entry(key)
        e.coolingUntil = until
        e.m.cooling.unsafeUpdate(until === undefined ? 0 : 1, noTags)
      }),
    stats: Effect.map(Clock.currentTimeMillis, (now) => {
      let requests = 0
      let successes = 0
      let failures = 0
      let spend = 0
      let inFlight = 0
      for (const e of entries.values()) {
        requests += e.requests
        successes += e.successes
        failures += e.failures
        spend += e.spend
        inFlight += e.inFlight
      }
      const keys = Array.from(entries.values(), (e): KeyStats => ({
        id: e.id,
        account: e.account,
        requests: e.requests,
        successes: e.successes,
        failures: e.failures,
        errors: { ...e.errors },
        share: requests === 0 ? 0 : e.requests / requests,
        errorRate: e.requests === 0 ? 0 : e.failures / e.requests,
        inFlight: e.inFlight,
        latencyMs: {
          p50: Histogram.quantile(e.latency, 0.5),
          p99: Histogram.quantile(e.latency, 0.99),
          mean: e.latency.count === 0 ? 0 : e.latency.sum / e.latency.count,
          max: e.latency.max
        },
        spend: e.spend,
        credit: e.credit,
        coolingUntil: e.coolingUntil !== undefined && e.coolingUntil > now ? e.coolingUntil : undefined
      }))
      return {
        requests,
        successes,
        failures,
        retries,
        spend,
        inFlight,
        requestErrors: { ...requestErrors },
        keys
      }
    })
  })
})

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<Monitor> = Layer.effect(Monitor, make)
