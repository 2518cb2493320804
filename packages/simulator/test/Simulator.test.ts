import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { request } from "./http.js"
import { basic, chat, costOf, get, MINI, messages, PROMPT_TOKENS, secret, statsWhen } from "./support.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

describe("Simulator", () => {
  it.scopedLive("answers a JSON chat with usage.cost and X-Generation-Id, and records the generation", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      const res = yield* chat(sim, secret(0), { model: MINI, messages })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.json.object, "chat.completion")
      assert.strictEqual(res.headers.get("x-generation-id"), res.json.id)
      assert.isNull(res.headers.get("x-ratelimit-limit"))
      assert.strictEqual(res.json.choices[0].message.role, "assistant")
      assert.strictEqual(res.json.usage.prompt_tokens, PROMPT_TOKENS)
      assert.strictEqual(res.json.usage.completion_tokens, 32)
      assert.closeTo(res.json.usage.cost, costOf(32), 1e-15)

      const gen = yield* get(sim, `/generation?id=${res.json.id}`, secret(1))
      assert.strictEqual(gen.status, 200)
      assert.closeTo(gen.json.data.total_cost, costOf(32), 1e-15)
      const other = yield* get(sim, `/generation?id=${res.json.id}`, secret(2))
      assert.strictEqual(other.status, 404) // another account's generation

      const stats = yield* sim.stats
      assert.strictEqual(stats.requests, 1)
      assert.deepStrictEqual(stats.keys.a!.byOutcome, { "200": 1 })
      assert.closeTo(stats.keys.a!.spend, costOf(32), 1e-15)
    })
  )

  it.scopedLive("answers 401 for a revoked, unknown or missing key", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      const revoked = yield* chat(sim, secret(3), { model: MINI, messages })
      assert.strictEqual(revoked.status, 401)
      assert.strictEqual(revoked.json.error.code, 401)
      assert.strictEqual(revoked.json.error.metadata.error_type, "authentication")
      const unknown = yield* chat(sim, secret(50), { model: MINI, messages })
      assert.strictEqual(unknown.status, 401)
      const missing = yield* request(`${sim.baseUrl}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: MINI, messages })
      })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual((yield* get(sim, "/key", secret(3))).status, 401)
      const stats = yield* sim.stats
      assert.strictEqual(stats.unauthenticated, 2)
      assert.deepStrictEqual(stats.keys.dead!.byOutcome, { "401": 1 })
      assert.strictEqual(stats.byOutcome["401"], 3)
    })
  )

  it.scopedLive("rejects an unknown model and malformed bodies with 400", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      const unknown = yield* chat(sim, secret(0), { model: "nope/model-x", messages })
      assert.strictEqual(unknown.status, 400)
      assert.strictEqual(unknown.json.error.metadata.error_type, "model_not_found")
      assert.include(unknown.json.error.message, "nope/model-x")
      const notJson = yield* chat(sim, secret(0), "{ not json")
      assert.strictEqual(notJson.status, 400)
      assert.match(notJson.json.error.message, /invalid json/i)
      const noMessages = yield* chat(sim, secret(0), { model: MINI })
      assert.strictEqual(noMessages.status, 400)
      assert.include(noMessages.json.error.message, "messages")
      const empty = yield* chat(sim, secret(0), { model: MINI, messages: [] })
      assert.strictEqual(empty.status, 400)
      const badMax = yield* chat(sim, secret(0), { model: MINI, messages, max_tokens: -1 })
      assert.include(badMax.json.error.message, "max_tokens")
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.a!.byOutcome, { "400": 5 })
      assert.strictEqual(stats.spend, 0)
    })
  )

  it.scopedLive("closes with a request still stalled, and can be reconfigured at run time", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const sim = yield* Simulator.make(basic()).pipe(Scope.extend(scope))
      yield* sim.setFaultScript("a", ["stall"])
      const pending = fetch(`${sim.baseUrl}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret(0)}` },
        body: JSON.stringify({ model: MINI, messages })
      }).then(
        () => "answered",
        () => "failed"
      )
      yield* statsWhen(sim, (s) => s.inFlight === 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* Effect.promise(() => pending), "failed")

      const live = yield* Simulator.make(basic())
      yield* live.updateKey("a", { revoked: true })
      assert.strictEqual((yield* chat(live, secret(0), { model: MINI, messages })).status, 401)
      yield* live.updateKey("b", { limit: 0 })
      assert.strictEqual((yield* chat(live, secret(1), { model: MINI, messages })).status, 402)
      yield* live.updateKey("b", { limit: null })
      assert.strictEqual((yield* chat(live, secret(1), { model: MINI, messages })).status, 200)
      const added = yield* live.addKey({ label: "new", secret: secret(9), account: "two" })
      assert.strictEqual(
        (yield* chat(live, Redacted.value(added.secret), { model: MINI, messages })).status,
        200
      )
      const missing = yield* Effect.flip(live.updateKey("nobody", { revoked: true }))
      assert.strictEqual(missing.reason, "UnknownKey")
      const duplicate = yield* Effect.flip(live.addKey({ label: "a", secret: secret(10) }))
      assert.strictEqual(duplicate.reason, "InvalidConfig")
    })
  )

  it.scopedLive("provides the Simulator service as a layer", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.Simulator
      assert.match(sim.baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/api\/v1$/)
      assert.strictEqual(sim.keys.length, 5)
      const primary = sim.keys.find((k) => k.label === "primary")!
      assert.strictEqual(
        (yield* chat(sim, Redacted.value(primary.secret), { model: MINI, messages })).status,
        200
      )
    }).pipe(Effect.provide(Simulator.layer({ ...Simulator.demoPool(3), latency: { kind: "fixed", ms: 0 } })))
  )

  it.effect("validates configuration and generates key-shaped secrets deterministically", () =>
    Effect.gen(function* () {
      const secrets = Simulator.demoPool(5).keys.map((k) => k.secret as string)
      assert.strictEqual(new Set(secrets).size, 5)
      for (const s of secrets) assert.match(s, /^sk-or-v1-[0-9a-f]{64}$/)
      assert.deepStrictEqual(
        Simulator.demoPool(5).keys.map((k) => k.secret),
        secrets
      )
      assert.notDeepEqual(
        Simulator.demoPool(6).keys.map((k) => k.secret),
        secrets
      )
      const tooMuch = yield* Effect.flip(
        Effect.scoped(
          Simulator.make({ keys: [{ secret: secret(0), faults: { rates: { "500": 0.7, "502": 0.5 } } }] })
        )
      )
      assert.strictEqual(tooMuch.reason, "InvalidConfig")
      const twice = yield* Effect.flip(
        Effect.scoped(Simulator.make({ keys: [{ secret: secret(0) }, { secret: secret(0) }] }))
      )
      assert.notInclude(twice.message, secret(0))
      const bad = yield* Effect.flip(
        Simulator.decodeConfig({ keys: [{ secret: secret(0), limit: -1 }], bogus: 1 })
      )
      assert.strictEqual(bad.reason, "InvalidConfig")
      assert.include(bad.message, "limit")
      assert.include(bad.message, "bogus")
      const fromJson = yield* Simulator.decodeConfig(JSON.parse(JSON.stringify(Simulator.demoPool(5))))
      assert.strictEqual(fromJson.keys.length, 5)
    })
  )
})
