/**
 * Gateway test support: a simulator with a few keys, a gateway config pointing at it (secrets
 * passed through a `ConfigProvider`, as env vars would be), and raw requests.
 */
import { assert } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import * as Gateway from "../src/Gateway.js"
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

export const MODEL = "openai/gpt-4o-mini"
export const messages = [{ role: "user" as const, content: "hello" }]

/** A simulator over `labels` and a gateway over it. */
export const setup = (
  labels: ReadonlyArray<string>,
  sim: Partial<Simulator.Config> = {},
  extra: Record<string, unknown> = {}
) =>
  Effect.gen(function* () {
    const s = yield* Simulator.make({ seed: 7, keys: simKeys(labels), ...sim })
    const gw = yield* Gateway.make(yield* configFor(s, extra))
    return { sim: s, gw }
  })

export const secretsOf = (sim: Simulator.Handle) => sim.keys.map((k) => Redacted.value(k.secret))

/** Polls `f` every 10 ms, up to 2 s. */
export const waitUntil = (f: Effect.Effect<boolean>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (yield* f) return
      yield* Effect.sleep(Duration.millis(10))
    }
    assert.fail(`timed out waiting for ${what}`)
  })

/** A chat request sent on a raw connection, so that the test can cut it off (`req.destroy()`). */
export const openChat = (gw: Gateway.Gateway) => {
  const req = http.request(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }
  })
  req.on("error", () => undefined)
  req.end(chatBody())
  return req
}

/** After a client left: upstream saw the cancel, the key is free again, and it serves the next request. */
export const cancelledAndReleased = (sim: Simulator.Handle, gw: Gateway.Gateway) =>
  Effect.gen(function* () {
    yield* waitUntil(
      Effect.map(sim.stats, (s) => s.inFlight === 0),
      "upstream to see the cancel"
    )
    yield* waitUntil(
      Effect.map(gw.status, (s) => s.keys[0]!.inFlight === 0 && s.inFlightRequests === 0),
      "the key to be released"
    )
    // Released with no verdict: a client leaving is not the key's fault.
    assert.strictEqual((yield* gw.status).keys[0]!.failures, 0)
    assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
  })

/** The admin token the dashboard tests sign in with. */
export const ADMIN = "admin-token-9876543210-abcdef"

/** Which of the gateway token, the admin token and the keys' secrets `text` holds (none, we hope). */
export const secretsIn = (sim: Simulator.Handle, text: string) =>
  [TOKEN, ADMIN, ...sim.keys.map((k) => Redacted.value(k.secret))].filter((s) => text.includes(s))
