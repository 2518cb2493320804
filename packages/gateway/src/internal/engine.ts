import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Balancer from "@or-balancer/core/Balancer"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import type * as Monitor from "@or-balancer/core/Monitor"
import type * as StateStore from "@or-balancer/core/StateStore"
import * as AccountPacing from "@or-balancer/strategies/AccountPacing"
import * as ByModel from "@or-balancer/strategies/ByModel"
import * as ConcurrencyLimited from "@or-balancer/strategies/ConcurrencyLimited"
import * as CreditAware from "@or-balancer/strategies/CreditAware"
import * as CreditLedger from "@or-balancer/strategies/CreditLedger"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as LeastBusy from "@or-balancer/strategies/LeastBusy"
import * as RandomStrategy from "@or-balancer/strategies/Random"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Sticky from "@or-balancer/strategies/Sticky"
import * as Threshold from "@or-balancer/strategies/Threshold"
import * as Weighted from "@or-balancer/strategies/Weighted"
import * as WeightedRandom from "@or-balancer/strategies/WeightedRandom"
import * as Context from "effect/Context"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as GatewayConfig from "../GatewayConfig.js"
import * as Fleet from "@or-balancer/redis/Fleet"
import * as RedisStore from "@or-balancer/redis/RedisStore"
import * as HttpCreditLookup from "@or-balancer/http/HttpCreditLookup"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import type * as Tracer from "effect/Tracer"
import type * as ClientsFleet from "./clientsFleet.js"
import * as Trace from "./trace.js"

type Shared = Monitor.Monitor | StateStore.StateStore
type SelectorLayer = Layer.Layer<
  KeySelector.KeySelector,
  never,
  KeyPool.KeyPool | StateStore.StateStore | CreditLedger.CreditLedger
>

const needsLedger = (stack: ReadonlyArray<GatewayConfig.StrategyEntry>) =>
  stack.some((s) => s.name === "credit-aware" || s.name === "threshold")

const ledgerTtl = (stack: ReadonlyArray<GatewayConfig.StrategyEntry>) => {
  for (const s of stack) {
    if ((s.name === "credit-aware" || s.name === "threshold") && s.ttlMs !== undefined) return s.ttlMs
  }
  return undefined
}

const base = (entry: GatewayConfig.StrategyEntry): SelectorLayer => {
  switch (entry.name) {
    case "round-robin":
      return RoundRobin.layer({ name: "gateway" })
    case "weighted":
      return Weighted.layer({ name: "gateway" })
    case "random":
      return RandomStrategy.layer
    case "weighted-random":
      return WeightedRandom.layer
    case "least-busy":
      return LeastBusy.layer
    case "credit-aware":
      return CreditAware.layer(entry.estimate === undefined ? {} : { estimate: entry.estimate })
    default:
      // decode() guarantees the last entry is a base strategy.
      return RoundRobin.layer({ name: "gateway" })
  }
}

/** Where a built stack's pacing hands its windows' reader, for `/status`. */
export interface PacingSeen {
  windows?: Effect.Effect<ReadonlyArray<AccountPacing.WindowStatus>> | undefined
}

const decorate = (
  entry: GatewayConfig.StrategyEntry,
  inner: SelectorLayer,
  seen?: PacingSeen
): SelectorLayer => {
  switch (entry.name) {
    case "health-aware":
      return HealthAware.layer({
        failureThreshold: entry.failureThreshold,
        baseCooldown: entry.baseCooldownMs === undefined ? undefined : Duration.millis(entry.baseCooldownMs),
        maxCooldown: entry.maxCooldownMs === undefined ? undefined : Duration.millis(entry.maxCooldownMs),
        recovery: entry.recovery,
        panicThreshold: entry.panicThreshold
      }).pipe(Layer.provide(inner))
    case "account-pacing":
      return Layer.effect(
        KeySelector.KeySelector,
        Effect.tap(
          AccountPacing.make(
            entry.maxWaitMs === undefined ? {} : { maxWait: Duration.millis(entry.maxWaitMs) }
          ),
          (pacing) => Effect.sync(() => seen !== undefined && (seen.windows = pacing.windows))
        )
      ).pipe(Layer.provide(inner))
    case "concurrency-limited":
      return ConcurrencyLimited.layer({ defaultMax: entry.defaultMax }).pipe(Layer.provide(inner))
    case "threshold":
      return Threshold.layer({
        threshold: entry.threshold,
        stay: entry.stay,
        estimate: entry.estimate,
        name: "gateway"
      }).pipe(Layer.provide(inner))
    case "sticky":
      return Sticky.layer.pipe(Layer.provide(inner))
    case "by-model":
      return ByModel.layer(
        entry.routes.map((r) =>
          r.keys === undefined ? { pattern: r.pattern } : { pattern: r.pattern, keys: r.keys }
        )
      ).pipe(Layer.provide(inner))
    default:
      return inner
  }
}

/** The strategy stack, outermost first, as one `KeySelector` layer. */
export const selectorLayer = (
  stack: ReadonlyArray<GatewayConfig.StrategyEntry>,
  seen?: PacingSeen
): SelectorLayer => {
  let layer = base(stack[stack.length - 1]!)
  for (let i = stack.length - 2; i >= 0; i--) layer = decorate(stack[i]!, layer, seen)
  return layer
}

export const balancerOptions = (config: GatewayConfig.GatewayConfig): Balancer.Options => ({
  // The gateway makes its own request and attempt spans (internal/trace.ts), the fast path's too.
  spans: false,
  maxAttempts: config.retry.maxAttempts,
  deadline: Duration.millis(config.deadlines.keyWaitMs),
  backoff: Schedule.exponential(Duration.millis(config.retry.baseDelayMs)).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((d) => Duration.min(d, Duration.millis(config.retry.maxDelayMs)))
  ),
  budget:
    config.retry.budget === false
      ? false
      : {
          ratio: config.retry.budget.ratio,
          minPerSecond: config.retry.budget.minPerSecond,
          // At least a request's whole life: a request counts toward the budget until it ends. With
          // a window shorter than the queue a burst waits in (Overload: 10,000 at once, answered
          // over 10-20 s), the burst's own requests had left the window by the time they failed,
          // their retries found the floor alone, and the upstream's 5xx went to the caller.
          window: Duration.millis(Math.max(config.retry.budget.windowMs, config.deadlines.requestMs))
        }
})

export type EngineServices = Balancer.Balancer | KeyPool.KeyPool | Monitor.Monitor | StateStore.StateStore

export interface Built {
  readonly runtime: Runtime.Runtime<EngineServices>
  readonly balancer: Balancer.Service
  readonly pool: KeyPool.Service
  /** The credit ledger, when a strategy of the stack keeps one: `/metrics` and `/status` read it. */
  readonly ledger: CreditLedger.Service | undefined
  readonly scope: Scope.CloseableScope
  /** The runtime's clock, for the decisions made outside a fiber. */
  readonly clock: Clock.Clock
  /** The tracer the gateway was started under, unless Effect's built-in one (then no spans: trace.ts). */
  readonly tracer: Tracer.Tracer | undefined
  /** Each key's `limit_reset` as its last credit lookup said (only when the stack keeps a ledger). */
  readonly resets: ReadonlyMap<string, CreditLookup.KeyInfo["limitReset"]>
  /** This replica's Redis link, when the config has a `redis` section (clients' budgets use it). */
  readonly fleet: ClientsFleet.Link | undefined
  /** The learned rate windows, when the stack paces accounts (`account-pacing`). */
  readonly pacing: Effect.Effect<ReadonlyArray<AccountPacing.WindowStatus>> | undefined
}

/** The credit lookup, noting each key's `limit_reset` for the forecasts as it passes (no extra request). */
const recordResets = (resets: Map<string, CreditLookup.KeyInfo["limitReset"]>) =>
  Layer.effect(
    CreditLookup.CreditLookup,
    Effect.map(CreditLookup.CreditLookup, (inner) => ({
      accountBalance: inner.accountBalance,
      lookup: (key: Key.Key) =>
        Effect.tap(inner.lookup(key), (info) => Effect.sync(() => resets.set(key.id, info.limitReset)))
    }))
  )

/**
 * Builds the key pool, strategy stack and balancer of one configuration on top of the shared
 * monitor and state store (so stats, health and cooldowns survive a reload). Closing `scope`
 * releases what the strategies hold.
 */
export const build = (
  config: GatewayConfig.GatewayConfig
): Effect.Effect<Built, import("@or-balancer/core/Key").KeyConfigError, Shared> =>
  Effect.gen(function* () {
    const resets = new Map<string, CreditLookup.KeyInfo["limitReset"]>()
    const pool = KeyPool.layer(config.keys)
    // One fleet per build (a layer is built once however many layers it is provided to): the
    // strategies' capacity and health, the ledger's credit and the clients' budgets
    // (clientsFleet.ts) share one connection and replica id.
    const fleet =
      config.redis === undefined
        ? undefined
        : // The URL was checked by decode: nothing left to fail on.
          Layer.orDie(
            Fleet.layer({
              url: config.redis.url,
              password: config.redis.password,
              replicaId: config.redis.replicaId,
              replicas: config.redis.replicas,
              leaseTtlMs: config.redis.leaseTtlMs,
              commandTimeoutMs: config.redis.commandTimeoutMs
            })
          )
    const ledger = needsLedger(config.strategy)
      ? CreditLedger.layer(
          ledgerTtl(config.strategy) === undefined
            ? {}
            : { ttl: Duration.millis(ledgerTtl(config.strategy)!) }
        ).pipe(
          Layer.provide(recordResets(resets)),
          Layer.provide(
            config.managementKeys === undefined
              ? HttpCreditLookup.layer
              : HttpCreditLookup.layerWithManagement(config.managementKeys)
          ),
          Layer.provide(OpenRouterClient.layerClientConfig({ baseUrl: config.baseUrl })),
          Layer.provide(NodeHttpClient.layerUndici)
        )
      : // No strategy of this stack asks for the ledger: nothing reads this empty context.
        Layer.succeedContext(Context.empty() as Context.Context<CreditLedger.CreditLedger>)
    const credit = fleet === undefined ? ledger : ledger.pipe(Layer.provide(fleet))
    const seen: PacingSeen = {}
    const selectors =
      fleet === undefined
        ? selectorLayer(config.strategy, seen)
        : selectorLayer(config.strategy, seen).pipe(Layer.provide(fleet))
    const layer = Balancer.layer(balancerOptions(config)).pipe(
      Layer.provideMerge(selectors),
      Layer.provideMerge(credit),
      Layer.provideMerge(pool)
    )
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      fleet === undefined ? layer : Layer.merge(layer, fleet),
      scope
    ).pipe(Effect.tapErrorCause((cause) => Scope.close(scope, Exit.failCause(cause))))
    const link: ClientsFleet.Link | undefined =
      config.redis === undefined
        ? undefined
        : {
            store: Context.get(
              context as Context.Context<unknown> as Context.Context<RedisStore.RedisStore>,
              RedisStore.RedisStore
            ),
            replicaId: Context.get(
              context as Context.Context<unknown> as Context.Context<Fleet.Fleet>,
              Fleet.Fleet
            ).replicaId,
            replicas: config.redis.replicas
          }
    const runtime = yield* Effect.runtime<EngineServices>().pipe(Effect.provide(context))
    return {
      runtime,
      balancer: Context.get(context, Balancer.Balancer),
      pool: Context.get(context, KeyPool.KeyPool),
      ledger: needsLedger(config.strategy) ? Context.get(context, CreditLedger.CreditLedger) : undefined,
      scope,
      clock: yield* Effect.clock,
      tracer: yield* Trace.installed,
      resets,
      fleet: link,
      pacing: seen.windows
    }
  })
