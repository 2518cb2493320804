/**
 * Named clients: each with its own token, a budget reserved before the call and settled with the
 * answer's cost, a rate and model patterns. Over real loopback sockets against the simulator,
 * plus a property test of the reservation ledger under arbitrary interleavings.
 */
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Console from "effect/Console"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Cli from "../src/Cli.js"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import { chatBody, envOf, fileFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const ALPHA = "client-alpha-token-0123456789"
const BETA = "client-beta-token-9876543210"

const clientsConfig = (sim: Simulator.Handle, clients: ReadonlyArray<Record<string, unknown>>) =>
  GatewayConfig.decode(fileFor(sim, { clients })).pipe(
    Effect.withConfigProvider(
      ConfigProvider.fromMap(new Map([...envOf(sim), ["ALPHA_TOKEN", ALPHA], ["BETA_TOKEN", BETA]]))
    )
  )

const as = (token: string) => ({ authorization: `Bearer ${token}` })

const getText = (url: string) => Effect.promise(() => fetch(url).then((r) => r.text()))

const statusOf = (gw: Gateway.Gateway) => gw.status

describe("named clients", () => {
  it.scopedLive(
    "a client's token is accepted, its requests and spend counted; the flat token still works",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-a", "cl-b"]) })
        const gw = yield* Gateway.make(
          yield* clientsConfig(sim, [
            { id: "alpha", tokenEnv: "ALPHA_TOKEN", budget: { usd: 5, period: "daily" } },
            { id: "beta", tokenEnv: "BETA_TOKEN" }
          ])
        )
        const url = `${gw.url}/v1/chat/completions`
        for (let i = 0; i < 3; i++) assert.strictEqual((yield* post(url, chatBody(), as(ALPHA))).status, 200)
        assert.strictEqual((yield* post(url, chatBody(), as(BETA))).status, 200)
        assert.strictEqual((yield* post(url, chatBody(), as(TOKEN))).status, 200)
        assert.strictEqual((yield* post(url, chatBody(), as("not-a-token-at-all"))).status, 401)
        const status = yield* statusOf(gw)
        const alpha = status.clients.find((c) => c.id === "alpha")!
        const beta = status.clients.find((c) => c.id === "beta")!
        assert.strictEqual(alpha.requests, 3)
        assert.strictEqual(beta.requests, 1)
        assert.isAbove(alpha.spendUsd, 0)
        assert.strictEqual(alpha.budget!.spentUsd, alpha.spendUsd)
        assert.strictEqual(alpha.budget!.reservedUsd, 0)
        assert.closeTo(alpha.budget!.remainingUsd, 5 - alpha.spendUsd, 1e-12)
        // The key spend equals what the clients and the flat token spent.
        assert.closeTo(status.totals.spendUsd, alpha.spendUsd + beta.spendUsd, 1e-3)
        const metrics = yield* gw.metrics
        assert.include(metrics, 'or_balancer_client_requests_total{client="alpha"} 3')
        assert.match(metrics, /or_balancer_client_spend_usd\{client="alpha"\} 0\.0/)
        assert.match(metrics, /or_balancer_client_budget_remaining_usd\{client="alpha"\} 4\.9/)
      })
  )

  it.scopedLive("over budget: 429 with its own reason, Retry-After and the reset time", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-budget"]) })
      // The reservation is the whole budget: one request, then nothing until the next UTC day.
      const gw = yield* Gateway.make(
        yield* clientsConfig(sim, [
          { id: "alpha", tokenEnv: "ALPHA_TOKEN", budget: { usd: 0.001, period: "daily", reserveUsd: 0.001 } }
        ])
      )
      const url = `${gw.url}/v1/chat/completions`
      assert.strictEqual((yield* post(url, chatBody(), as(ALPHA))).status, 200)
      const refused = yield* post(url, chatBody(), as(ALPHA))
      assert.strictEqual(refused.status, 429)
      const body = JSON.parse(refused.text)
      assert.strictEqual(body.error.code, "client_budget_exceeded")
      assert.include(body.error.message, "daily budget")
      const retryAfter = Number(refused.headers.get("retry-after"))
      assert.isAtLeast(retryAfter, 1)
      assert.isAtMost(retryAfter, 300)
      const reset = Number(refused.headers.get("x-ratelimit-reset"))
      const d = new Date(Date.now())
      assert.strictEqual(reset, Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1))
      // The flat token has no budget.
      assert.strictEqual((yield* post(url, chatBody())).status, 200)
      const alpha = (yield* statusOf(gw)).clients[0]!
      assert.deepStrictEqual(alpha.refused, { budget: 1, rate: 0, model: 0 })
      assert.strictEqual(alpha.budget!.resetsAt, new Date(reset).toISOString())
    })
  )

  it.scopedLive(
    "reservations priced from the model price table: near its budget a request whose worst case would overshoot is refused before the call, one that fits is served",
    () =>
      Effect.gen(function* () {
        // $10 per million completion tokens, nothing else: max_tokens × $0.00001 is the worst case.
        const sim = yield* Simulator.make({
          seed: 7,
          keys: simKeys(["cl-priced"]),
          models: [
            ...Simulator.defaultModels,
            { id: "test/dear", promptPrice: 0, completionPrice: 10, requestPrice: 0 }
          ]
        })
        const gw = yield* Gateway.make(
          yield* clientsConfig(sim, [
            { id: "alpha", tokenEnv: "ALPHA_TOKEN", budget: { usd: 0.005, period: "daily" } }
          ])
        )
        const url = `${gw.url}/v1/chat/completions`
        const ask = (maxTokens: number) =>
          post(url, chatBody({ model: "test/dear", max_tokens: maxTokens }), as(ALPHA))
        // Spend some of it first: the answer's cost (usage.cost) settles, not the worst case.
        assert.strictEqual((yield* ask(50)).status, 200)
        const before = (yield* statusOf(gw)).clients[0]!.budget!
        assert.isAbove(before.spentUsd, 0)
        assert.isBelow(before.spentUsd, 50 * 0.00001 + 1e-12)
        assert.strictEqual(before.reservedUsd, 0)
        const fits = Math.floor(before.remainingUsd / 0.00001) - 5
        const calls = (yield* sim.stats).keys["cl-priced"]!.requests
        // Worst case over what is left: refused, and the upstream never asked.
        const over = yield* ask(fits + 10)
        assert.strictEqual(over.status, 429)
        assert.strictEqual(JSON.parse(over.text).error.code, "client_budget_exceeded")
        assert.strictEqual((yield* sim.stats).keys["cl-priced"]!.requests, calls)
        // Within what is left: served.
        assert.strictEqual((yield* ask(fits)).status, 200)
        assert.strictEqual((yield* sim.stats).keys["cl-priced"]!.requests, calls + 1)
        // A model the table does not know is reserved at reserveUsd ($0.01 by default): over this budget.
        const unknown = yield* post(url, chatBody({ model: "test/not-listed" }), as(ALPHA))
        assert.strictEqual(unknown.status, 429)
      })
  )

  it.scopedLive("over its rpm: 429 client_rate_limited with Retry-After", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-rate"]) })
      const gw = yield* Gateway.make(
        yield* clientsConfig(sim, [{ id: "alpha", tokenEnv: "ALPHA_TOKEN", rpm: 2 }])
      )
      const url = `${gw.url}/v1/chat/completions`
      assert.strictEqual((yield* post(url, chatBody(), as(ALPHA))).status, 200)
      assert.strictEqual((yield* post(url, chatBody(), as(ALPHA))).status, 200)
      const refused = yield* post(url, chatBody(), as(ALPHA))
      assert.strictEqual(refused.status, 429)
      assert.strictEqual(JSON.parse(refused.text).error.code, "client_rate_limited")
      const retryAfter = Number(refused.headers.get("retry-after"))
      assert.isAtLeast(retryAfter, 59)
      assert.isAtMost(retryAfter, 60)
    })
  )

  it.scopedLive("a model outside its patterns: 403 naming the model", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-model"]) })
      const gw = yield* Gateway.make(
        yield* clientsConfig(sim, [{ id: "alpha", tokenEnv: "ALPHA_TOKEN", models: ["openai/*"] }])
      )
      const url = `${gw.url}/v1/chat/completions`
      assert.strictEqual((yield* post(url, chatBody({ model: "openai/gpt-4o-mini" }), as(ALPHA))).status, 200)
      const refused = yield* post(url, chatBody({ model: "anthropic/claude-3.5-sonnet" }), as(ALPHA))
      assert.strictEqual(refused.status, 403)
      const body = JSON.parse(refused.text)
      assert.strictEqual(body.error.code, "client_model_not_allowed")
      assert.include(body.error.message, '"anthropic/claude-3.5-sonnet"')
      // A list of fallbacks is checked whole.
      const list = yield* post(
        url,
        JSON.stringify({ models: ["openai/gpt-4o-mini", "google/gemini-flash-1.5"], messages: [] }),
        as(ALPHA)
      )
      assert.strictEqual(list.status, 403)
      assert.include(JSON.parse(list.text).error.message, '"google/gemini-flash-1.5"')
    })
  )

  it.scopedLive("concurrent requests on a budget near exhaustion never overshoot it", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-conc-a", "cl-conc-b"]) })
      // Room for three reservations of $0.001: of 20 requests at once, at most three are admitted.
      const gw = yield* Gateway.make(
        yield* clientsConfig(sim, [
          {
            id: "alpha",
            tokenEnv: "ALPHA_TOKEN",
            budget: { usd: 0.0035, period: "weekly", reserveUsd: 0.001 }
          }
        ])
      )
      const url = `${gw.url}/v1/chat/completions`
      const answers = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () => post(url, chatBody(), as(ALPHA)),
        { concurrency: "unbounded" }
      )
      const ok = answers.filter((a) => a.status === 200).length
      assert.isAtLeast(ok, 3)
      assert.strictEqual(ok + answers.filter((a) => a.status === 429).length, 20)
      const alpha = (yield* statusOf(gw)).clients[0]!
      assert.isAtMost(alpha.budget!.spentUsd, 0.0035)
      assert.strictEqual(alpha.budget!.reservedUsd, 0)
      assert.strictEqual(alpha.requests, ok)
    })
  )

  it.scopedLive("a client's token never appears in /status, /metrics, the dashboard or an error", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-secret"]) })
      const gw = yield* Gateway.make(
        yield* clientsConfig(sim, [
          { id: "alpha", tokenEnv: "ALPHA_TOKEN", budget: { usd: 0, period: "daily" }, models: ["openai/*"] },
          { id: "beta", tokenEnv: "BETA_TOKEN", rpm: 1 }
        ])
      )
      const url = `${gw.url}/v1/chat/completions`
      const outputs: Array<string> = []
      outputs.push((yield* post(url, chatBody(), as(ALPHA))).text)
      outputs.push((yield* post(url, chatBody({ model: "x/y" }), as(ALPHA))).text)
      outputs.push((yield* post(url, chatBody(), as(BETA))).text)
      outputs.push((yield* post(url, chatBody(), as(BETA))).text)
      outputs.push(JSON.stringify(yield* gw.status))
      outputs.push(yield* gw.metrics)
      outputs.push(yield* getText(`${gw.url}/status`))
      outputs.push(yield* getText(`${gw.url}/metrics`))
      const all = outputs.join("\n")
      assert.include(all, "alpha")
      for (const secret of [ALPHA, BETA, ALPHA.slice(0, 12), BETA.slice(-12)]) assert.notInclude(all, secret)
    })
  )

  it.effect(
    "config: a client needs its token variable; ids are unique; clients alone need an admin token",
    () =>
      Effect.gen(function* () {
        const base = {
          baseUrl: "http://127.0.0.1:1",
          keys: [{ id: "k", secretEnv: "K" }]
        }
        const env = ConfigProvider.fromMap(
          new Map([
            ["K", Simulator.simulatedSecret(1, 0)],
            ["A", ALPHA],
            ["ADMIN", "admin-token-0123456789"]
          ])
        )
        const decode = (file: unknown) =>
          GatewayConfig.decode(file).pipe(Effect.withConfigProvider(env), Effect.flip)
        const missing = yield* decode({ ...base, tokens: ["A"], clients: [{ id: "a", tokenEnv: "NOPE" }] })
        assert.strictEqual(missing.path, "clients[0].tokenEnv")
        const twice = yield* decode({
          ...base,
          tokens: ["A"],
          clients: [
            { id: "a", tokenEnv: "A" },
            { id: "a", tokenEnv: "A" }
          ]
        })
        assert.strictEqual(twice.path, "clients[1].id")
        const noAdmin = yield* decode({ ...base, clients: [{ id: "a", tokenEnv: "A" }] })
        assert.strictEqual(noAdmin.path, "admin.tokens")
        const ok = yield* GatewayConfig.decode({
          ...base,
          admin: { tokens: ["ADMIN"] },
          clients: [{ id: "a", tokenEnv: "A", budget: { usd: 1, period: "monthly" } }]
        }).pipe(Effect.withConfigProvider(env))
        assert.strictEqual(ok.clients[0]!.budget!.reserveUsd, 0.01)
        assert.strictEqual(ok.tokens.length, 0)
      })
  )
})

describe("or-balancer check with clients", () => {
  it.scopedLive("lists the clients and their budgets, never their tokens", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["cl-check"]) })
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-clients-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const file = path.join(dir, "gateway.json")
      fs.writeFileSync(
        file,
        JSON.stringify(
          fileFor(sim, {
            clients: [
              {
                id: "alpha",
                tokenEnv: "ALPHA_TOKEN",
                budget: { usd: 5, period: "weekly" },
                rpm: 60,
                models: ["openai/*"]
              },
              { id: "beta", tokenEnv: "BETA_TOKEN" }
            ]
          })
        )
      )
      const lines: Array<string> = []
      const current = yield* Console.consoleWith(Effect.succeed)
      const recording: Console.Console = {
        ...current,
        log: (...args: ReadonlyArray<unknown>) =>
          Effect.sync(() => void lines.push(args.map(String).join(" ")))
      }
      const exit = yield* Cli.run(["node", "or-balancer", "check", "--config", file]).pipe(
        Effect.provide(NodeContext.layer),
        Effect.withConfigProvider(
          ConfigProvider.fromMap(new Map([...envOf(sim), ["ALPHA_TOKEN", ALPHA], ["BETA_TOKEN", BETA]]))
        ),
        Effect.withConsole(recording),
        Effect.exit
      )
      assert.isTrue(exit._tag === "Success")
      const output = lines.join("\n")
      assert.match(output, /^client\s+budget\s+period\s+rpm\s+models$/m)
      assert.match(output, /^alpha\s+\$5\s+weekly \(resets 00:00 UTC\)\s+60\s+openai\/\*$/m)
      assert.match(output, /^beta\s+none\s+-\s+-\s+any$/m)
      assert.notInclude(output, ALPHA)
      assert.notInclude(output, BETA)
    })
  )
})
