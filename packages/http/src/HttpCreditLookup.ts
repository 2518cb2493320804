/**
 * Core's `CreditLookup` over OpenRouter's `GET /api/v1/key` (the legacy `/api/v1/auth/key` when
 * the first answers 404). Each call asks the API: caching, single flight and refresh policy belong
 * to the strategies that use it (credit-aware, threshold, health probe).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as internal from "./internal/client.js"
import { ClientConfig } from "./OpenRouterClient.js"

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<CreditLookup.Service, never, HttpClient.HttpClient> = Effect.gen(
  function* () {
    const client = yield* HttpClient.HttpClient
    const config = yield* ClientConfig
    return CreditLookup.CreditLookup.of({ lookup: (key) => internal.keyInfo(client, config, key) })
  }
)

/**
 * The lookup with each account's balance too (`accountBalance`), asked with the management key
 * given for the account (`GET /api/v1/credits`); accounts without one have no known balance.
 *
 * @since 0.4.0
 * @category Constructors
 */
export const makeWithManagement = (
  management: ReadonlyMap<string, Key.Key>
): Effect.Effect<CreditLookup.Service, never, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const config = yield* ClientConfig
    return CreditLookup.CreditLookup.of({
      lookup: (key) => internal.keyInfo(client, config, key),
      accountBalance: (account) => {
        const key = management.get(account)
        return key === undefined ? Effect.succeed(undefined) : internal.accountBalance(client, config, key)
      }
    })
  })

/**
 * `layer`, with each account's balance from its management key (see {@link makeWithManagement}).
 *
 * @since 0.4.0
 * @category Layers
 */
export const layerWithManagement = (
  management: ReadonlyMap<string, Key.Key>
): Layer.Layer<CreditLookup.CreditLookup, never, HttpClient.HttpClient> =>
  Layer.effect(CreditLookup.CreditLookup, makeWithManagement(management))

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<CreditLookup.CreditLookup, never, HttpClient.HttpClient> = Layer.effect(
  CreditLookup.CreditLookup,
  make
)
