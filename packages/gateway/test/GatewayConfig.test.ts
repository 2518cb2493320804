import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as GatewayConfig from "../src/GatewayConfig.js"

const SECRET = `sk-or-v1-${"ab12".repeat(16)}`
const env = ConfigProvider.fromMap(
  new Map([
    ["K1", SECRET],
    ["K2", `sk-or-v1-${"cd34".repeat(16)}`],
    ["TOK", "t0ken"],
    ["BAD", "not-a-key"]
  ])
)

const base = {
  tokens: ["TOK"],
  keys: [
    { id: "one", secretEnv: "K1", account: "acme" },
    { id: "two", secretEnv: "K2" }
  ]
}

const decode = (input: unknown) => GatewayConfig.decode(input).pipe(Effect.withConfigProvider(env))
const failure = (input: unknown) => Effect.flip(decode(input))

describe("GatewayConfig", () => {
  it.effect("fills defaults and reads secrets from the environment by name", () =>
    Effect.gen(function* () {
      const c = yield* decode(base)
      assert.strictEqual(c.baseUrl, "https://openrouter.ai/api/v1")
      assert.strictEqual(c.host, "127.0.0.1")
      assert.strictEqual(c.port, 8080)
      assert.deepStrictEqual(c.strategy, [{ name: "round-robin" }])
      assert.strictEqual(Redacted.value(c.keys[0]!.secret), SECRET)
      assert.strictEqual(Redacted.value(c.tokens[0]!), "t0ken")
      assert.strictEqual(c.bodyLimitBytes, 1024 * 1024)
    })
  )

  it.effect("errors name the field's path", () =>
    Effect.gen(function* () {
      const weight = yield* failure({
        ...base,
        keys: [base.keys[0], { id: "two", secretEnv: "K2", weight: 0 }]
      })
      assert.strictEqual(weight.path, "keys[1].weight")
      assert.include(weight.message, "keys[1].weight: must be a positive integer")

      const missing = yield* failure({ ...base, keys: [{ id: "x", secretEnv: "NOPE" }] })
      assert.strictEqual(missing.path, "keys[0].secretEnv")
      assert.include(missing.message, "NOPE is not set")

      const stack = yield* failure({
        ...base,
        strategy: [{ name: "health-aware" }, { name: "concurrency-limited" }]
      })
      assert.strictEqual(stack.path, "strategy[1].name")

      const unknown = yield* failure({ ...base, strategy: [{ name: "fastest" }] })
      assert.match(unknown.path, /^strategy\[0\]/)

      const option = yield* failure({
        ...base,
        strategy: [{ name: "health-aware", panicThreshold: 2 }, { name: "weighted" }]
      })
      assert.strictEqual(option.path, "strategy[0].panicThreshold")

      const account = yield* failure({ ...base, accounts: { globex: {} } })
      assert.strictEqual(account.path, "keys[0].account")

      const extra = yield* failure({ ...base, listen: { port: 8080, hots: "x" } })
      assert.strictEqual(extra.path, "listen.hots")

      const tokens = yield* failure({ keys: base.keys })
      assert.strictEqual(tokens.path, "tokens")
      assert.isTrue((yield* decode({ keys: base.keys, anonymous: true })).tokens.length === 0)

      const dup = yield* failure({ ...base, keys: [base.keys[0], { id: "one", secretEnv: "K2" }] })
      assert.strictEqual(dup.path, "keys[1].id")
    })
  )

  it.effect("a variable that does not hold a key is named, its value never shown", () =>
    Effect.gen(function* () {
      const e = yield* failure({ ...base, keys: [{ id: "x", secretEnv: "BAD" }] })
      assert.strictEqual(e.path, "keys[0].secretEnv")
      assert.notInclude(e.message, "not-a-key")
      const same = yield* failure({
        ...base,
        keys: [
          { id: "a", secretEnv: "K1" },
          { id: "b", secretEnv: "K1" }
        ]
      })
      assert.notInclude(same.message, SECRET)
    })
  )

  it.effect("invalid JSON text fails at the root without echoing the text", () =>
    Effect.gen(function* () {
      const e = yield* Effect.flip(GatewayConfig.parse(`{"keys": [{"secretEnv": "${SECRET}"`))
      assert.strictEqual(e.path, "(root)")
      assert.notInclude(e.message, SECRET)
    })
  )
})
