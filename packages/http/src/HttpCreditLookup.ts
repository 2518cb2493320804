/**
 * Core's `CreditLookup` over OpenRouter's `GET /api/v1/key` (the legacy `/api/v1/auth/key` when
 * the first answers 404). Each call asks the API: caching, single flight and refresh policy belong
 * to the strategies that use it (credit-aware, threshold, health probe).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
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
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<CreditLookup.CreditLookup, never, HttpClient.HttpClient> = Layer.effect(
  CreditLookup.CreditLookup,
  make
)
