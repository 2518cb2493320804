/**
 * One protocol, three readers: the same table of OpenRouter answers fed to `OpenRouterClient`,
 * `BalancedHttpClient` and the gateway over loopback gets the same verdict from each (the outcome
 * reported for the key: a success with its cost, or the error's tag).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Balancer from "@or-balancer/core/Balancer"
import * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as Monitor from "@or-balancer/core/Monitor"
import * as StateStore from "@or-balancer/core/StateStore"
import * as BalancedHttpClient from "@or-balancer/http/BalancedHttpClient"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Gateway from "../src/Gateway.js"
import { type Fixture, fixtures, serveFixtures } from "./ProtocolFixtures.js"
import { oneKeyConfig, TOKEN } from "./GatewaySupport.js"

const SECRET = "sk-or-v1-fixture0123456789abcdef0123456789abcdef"
const key = Key.make({ id: "only", secret: Redacted.make(SECRET) })

const requestOf = (f: Fixture) => ({
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "hi" }],
  stream: f.stream,
  fixture: f.name
})

/** One attempt per request, so the verdict on the one answer is what the key was told. */
const balancer = Balancer.layer({ maxAttempts: 1, budget: false }).pipe(
  Layer.provideMerge(RoundRobin.layer()),
  Layer.provideMerge(Layer.mergeAll(KeyPool.layer([key]), Monitor.layer, StateStore.layerMemory))
)

// The key's own verdict, or the caller's fault (a 400, an unknown model), which is no key's failure.
const verdictOf = (
  k: { successes: number; spend: number; errors: Readonly<Record<string, number>> } | undefined,
  requestErrors: Readonly<Record<string, number>>
) =>
  k === undefined
    ? "no report"
    : k.successes === 1
      ? `Success:${k.spend}`
      : [...Object.keys(k.errors), ...Object.keys(requestErrors)].join(",")

const monitored = Effect.flatMap(Monitor.Monitor, (m) => m.stats).pipe(
  Effect.map((s) =>
    verdictOf(
      s.keys.find((k) => k.id === "only"),
      s.requestErrors
    )
  )
)

const viaClient = (url: string, f: Fixture) =>
  Effect.gen(function* () {
    const client = yield* OpenRouterClient.OpenRouterClient
    const request = requestOf(f)
    yield* Effect.exit(f.stream ? Stream.runDrain(client.chatStream(request)) : client.chat(request))
    return yield* monitored
  }).pipe(
    Effect.provide(
      OpenRouterClient.layer.pipe(
        Layer.provideMerge(balancer),
        Layer.provideMerge(NodeHttpClient.layerUndici),
        Layer.provide(OpenRouterClient.layerClientConfig({ baseUrl: url }))
      )
    )
  )

const viaBalancedHttpClient = (url: string, f: Fixture) =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    yield* Effect.exit(
      client
        .execute(
          HttpClientRequest.post(`${url}/chat/completions`).pipe(
            HttpClientRequest.bodyUnsafeJson(requestOf(f))
          )
        )
        .pipe(Effect.flatMap((r) => r.text))
    )
    return yield* monitored
  }).pipe(
    Effect.provide(
      BalancedHttpClient.layer().pipe(
        Layer.provideMerge(balancer),
        Layer.provideMerge(NodeHttpClient.layerUndici)
      )
    )
  )

const viaGateway = (url: string, f: Fixture) =>
  Effect.gen(function* () {
    const config = yield* oneKeyConfig(url, SECRET, { retry: { maxAttempts: 1, budget: false } })
    const gw = yield* Gateway.make(config)
    yield* Effect.promise(() =>
      fetch(`${gw.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(requestOf(f))
      }).then(
        (r) => r.text().catch(() => ""),
        () => ""
      )
    )
    // The outcome is reported when the answer ends, just after the client has it all.
    for (let i = 0; i < 100 && (yield* gw.status).inFlightRequests > 0; i++) yield* Effect.sleep("10 millis")
    const status = yield* gw.status
    const k = status.keys[0]
    return verdictOf(k === undefined ? undefined : { ...k, spend: k.spendUsd }, status.totals.requestErrors)
  }).pipe(Effect.scoped)

describe("Protocol: one verdict per answer, whoever reads it", () => {
  it.scopedLive(
    "OpenRouterClient, BalancedHttpClient and the gateway agree on every fixture",
    () =>
      Effect.gen(function* () {
        const { url } = yield* serveFixtures
        for (const f of fixtures) {
          const got = {
            client: yield* viaClient(url, f),
            balancedHttpClient: yield* viaBalancedHttpClient(url, f),
            gateway: yield* viaGateway(url, f)
          }
          assert.deepStrictEqual(
            got,
            { client: f.verdict, balancedHttpClient: f.verdict, gateway: f.verdict },
            `fixture ${f.name}`
          )
        }
      }),
    // 22 fixtures, each through three entry points and a gateway of its own.
    180_000
  )
})
