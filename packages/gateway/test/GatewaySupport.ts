/**
 * Gateway test support: a simulator with a few keys, a gateway config pointing at it (secrets
 * passed through a `ConfigProvider`, as env vars would be), and raw requests.
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"

export const TOKEN = "gw-test-token-0123456789"

export const simKeys = (labels: ReadonlyArray<string>, seed = 7): Array<Simulator.KeyConfig> =>
  labels.map((label, i) => ({ label, account: "acme", secret: Simulator.simulatedSecret(seed, i) }))

export const envOf = (sim: Simulator.Handle): Map<string, string> => {
  const env = new Map<string, string>([["GW_TOKEN", TOKEN]])
  for (const k of sim.keys)
    env.set(`KEY_${k.label.toUpperCase().replace(/-/g, "_")}`, Redacted.value(k.secret))
  return env
}

export const fileFor = (
  sim: Simulator.Handle,
  extra: Record<string, unknown> = {},
  labels?: ReadonlyArray<string>
) => ({
  listen: { host: "127.0.0.1", port: 0 },
  baseUrl: sim.baseUrl,
  tokens: ["GW_TOKEN"],
  accounts: { acme: {} },
  keys: (labels ?? sim.keys.map((k) => k.label)).map((label) => ({
    id: label,
    secretEnv: `KEY_${label.toUpperCase().replace(/-/g, "_")}`,
    account: "acme"
  })),
  strategy: [{ name: "round-robin" }],
  retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 50, budget: false },
  deadlines: { keyWaitMs: 2000, drainMs: 2000 },
  ...extra
})

export const configFor = (
  sim: Simulator.Handle,
  extra: Record<string, unknown> = {},
  labels?: ReadonlyArray<string>
) =>
  GatewayConfig.decode(fileFor(sim, extra, labels)).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(envOf(sim)))
  )

export const chatBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hello" }], ...extra })

export interface Answer {
  readonly status: number
  readonly headers: { readonly get: (name: string) => string | null }
  readonly text: string
}

export const post = (
  url: string,
  body: string,
  headers: Record<string, string> = {}
): Effect.Effect<Answer> =>
  Effect.promise(() =>
    fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
      body
    }).then(async (r) => ({ status: r.status, headers: r.headers, text: await r.text() }))
  )
