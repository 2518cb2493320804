/**
 * Builds everything an example needs around one strategy: the key pool of the {@link Target},
 * the in-memory state store, the monitor, the credit ledger over `GET /key`, core's `Balancer`
 * and the balanced `OpenRouterClient`.
 *
 * @since 0.1.0
 */
import * as Balancer from "@or-balancer/core/Balancer"
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import * as Monitor from "@or-balancer/core/Monitor"
import * as StateStore from "@or-balancer/core/StateStore"
import * as HttpCreditLookup from "@or-balancer/http/HttpCreditLookup"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as ConcurrencyLimited from "@or-balancer/strategies/ConcurrencyLimited"
import * as CreditAware from "@or-balancer/strategies/CreditAware"
import * as CreditLedger from "@or-balancer/strategies/CreditLedger"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Layer from "effect/Layer"
import * as Target from "./Target.js"

/**
 * What a strategy layer may need from the stack.
 *
 * @since 0.1.0
 * @category Models
 */
export type Env =
  | KeyPool.KeyPool
  | StateStore.StateStore
  | Monitor.Monitor
  | CreditLookup.CreditLookup
  | CreditLedger.CreditLedger
  | HttpClient.HttpClient
  | OpenRouterClient.ClientConfig

/**
 * The services below the strategy: pool, store, monitor, credit lookup and ledger, HTTP.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerEnv = (
  ledger?: CreditLedger.Options
): Layer.Layer<Env, Key.KeyConfigError, Target.Target> => {
  const base = Layer.mergeAll(
    Target.layerPool,
    StateStore.layerMemory,
    Monitor.layer,
    Target.layerClientConfig,
    Target.layerHttp
  )
  return CreditLedger.layer(ledger).pipe(Layer.provideMerge(HttpCreditLookup.layer), Layer.provideMerge(base))
}

/**
 * The balanced client, the balancer and the environment, around `strategy`.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = <E>(
  strategy: Layer.Layer<KeySelector.KeySelector, E, Env>,
  options?: { readonly balancer?: Balancer.Options; readonly ledger?: CreditLedger.Options }
): Layer.Layer<
  OpenRouterClient.OpenRouterClient | Balancer.Balancer | KeySelector.KeySelector | Env,
  E | Key.KeyConfigError,
  Target.Target
> =>
  OpenRouterClient.layer.pipe(
    Layer.provideMerge(Balancer.layer(options?.balancer)),
    Layer.provideMerge(strategy),
    Layer.provideMerge(layerEnv(options?.ledger))
  )

/**
 * The default composed stack: health tracking over per-key concurrency limits over live credit.
 * Credit keeps a small cap from being overrun, concurrency caps each key, and health ejects
 * revoked, flaky and rate-limited keys for a growing cooldown.
 *
 * @since 0.1.0
 * @category Layers
 */
export const defaultStrategy = (options?: {
  readonly health?: HealthAware.Options
  readonly concurrency?: ConcurrencyLimited.Options
  readonly credit?: CreditAware.Options
}): Layer.Layer<KeySelector.KeySelector, never, Env> =>
  HealthAware.layer(options?.health).pipe(
    Layer.provide(ConcurrencyLimited.layer(options?.concurrency)),
    Layer.provide(CreditAware.layer(options?.credit))
  ) as Layer.Layer<KeySelector.KeySelector, never, Env>
