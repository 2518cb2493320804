/**
 * The demo's last phase: the same pool behind the gateway, used by two named clients with their
 * own budgets (one also limited to some models), then where the money went per client and each
 * key's credit forecast, read from the gateway's `/status`.
 */
import type * as Key from "@or-balancer/core/Key"
import * as Gateway from "@or-balancer/gateway/Gateway"
import * as GatewayConfig from "@or-balancer/gateway/GatewayConfig"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Runner from "./Runner.js"

/** Demo tokens for the two clients and the operator (not secrets: they exist for this run only). */
const TOKENS = {
  DEMO_OPERATOR: "demo-operator-token-0000",
  DEMO_WEB_APP: "demo-web-app-token-1111",
  DEMO_BATCH_JOB: "demo-batch-job-token-2222"
}

export interface ClientRow {
  readonly id: string
  readonly requests: number
  readonly spendUsd: number
  readonly budgetLeftUsd: number | null
  readonly refused: { readonly budget: number; readonly rate: number; readonly model: number }
}

export interface ForecastRow {
  readonly id: string
  readonly creditLeft: number | null
  readonly burnUsdPerMin: number
  readonly exhaustsAt: string | null
  readonly resetsAt: string | null
}

export interface Result {
  readonly clients: ReadonlyArray<ClientRow>
  readonly forecasts: ReadonlyArray<ForecastRow>
}

const models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "google/gemini-2.0-flash-001"]

export const run = (baseUrl: string, keys: ReadonlyArray<Key.Key>, requests: number) =>
  Effect.gen(function* () {
    const env = new Map<string, string>(Object.entries(TOKENS))
    keys.forEach((k, i) => env.set(`DEMO_KEY_${i}`, Redacted.value(k.secret)))
    const config = yield* GatewayConfig.decode({
      listen: { host: "127.0.0.1", port: 0 },
      baseUrl,
      tokens: ["DEMO_OPERATOR"],
      clients: [
        {
          id: "web-app",
          tokenEnv: "DEMO_WEB_APP",
          budget: { usd: 0.05, period: "daily", reserveUsd: 0.002 }
        },
        {
          id: "batch-job",
          tokenEnv: "DEMO_BATCH_JOB",
          budget: { usd: 0.004, period: "daily", reserveUsd: 0.001 },
          models: ["openai/*", "google/*"]
        }
      ],
      keys: keys.map((k, i) => ({
        id: k.id,
        secretEnv: `DEMO_KEY_${i}`,
        ...(k.account === undefined ? {} : { account: k.account })
      })),
      strategy: [{ name: "health-aware" }, { name: "credit-aware" }]
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
    const gw = yield* Gateway.make(config)
    const call = (token: string, i: number) =>
      Effect.promise(() =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: models[i % models.length],
            messages: [{ role: "user", content: `Question ${i}` }],
            max_tokens: 32
          })
        }).then((r) => r.text())
      )
    yield* Effect.forEach(
      Array.from({ length: requests }, (_, i) => i),
      (i) => call(i % 2 === 0 ? TOKENS.DEMO_WEB_APP : TOKENS.DEMO_BATCH_JOB, i),
      { concurrency: 8, discard: true }
    )
    const status = yield* gw.status
    const clients: Array<ClientRow> = status.clients.map((c) => ({
      id: c.id,
      requests: c.requests,
      spendUsd: c.spendUsd,
      budgetLeftUsd: c.budget?.remainingUsd ?? null,
      refused: c.refused
    }))
    const forecasts: Array<ForecastRow> = status.keys.map((k) => ({
      id: k.id,
      creditLeft: k.credit,
      ...k.forecast
    }))

    yield* Console.log("")
    yield* Console.log(`where the money went, per client (${requests} requests through the gateway):`)
    yield* Console.log("client       requests  spend       budget left  refused (budget / rate / model)")
    for (const c of clients)
      yield* Console.log(
        [
          c.id.padEnd(12),
          String(c.requests).padStart(8),
          Runner.usd(c.spendUsd).padStart(10),
          (c.budgetLeftUsd === null ? "none" : Runner.usd(c.budgetLeftUsd)).padStart(12),
          ` ${c.refused.budget} / ${c.refused.rate} / ${c.refused.model}`
        ].join("  ")
      )
    yield* Console.log("")
    yield* Console.log("credit forecast per key (burn over the last minutes):")
    yield* Console.log("key            credit left   burn/min     runs out in    comes back")
    const now = Date.now()
    const inText = (iso: string | null) => {
      if (iso === null) return "-"
      const s = (Date.parse(iso) - now) / 1000
      return s < 3600
        ? `${(s / 60).toFixed(1)} min`
        : s < 86_400
          ? `${(s / 3600).toFixed(1)} h`
          : `${(s / 86_400).toFixed(1)} d`
    }
    for (const f of forecasts)
      yield* Console.log(
        [
          f.id.padEnd(14),
          (f.creditLeft === null ? "unknown" : Runner.usd(f.creditLeft)).padStart(11),
          Runner.usd(f.burnUsdPerMin).padStart(10),
          inText(f.exhaustsAt).padStart(13),
          f.resetsAt === null ? "  -" : `  ${f.resetsAt.slice(0, 16).replace("T", " ")} UTC`
        ].join("  ")
      )
    return { clients, forecasts } satisfies Result
  }).pipe(Effect.scoped)
