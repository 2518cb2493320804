import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import * as GatewayConfig from "../src/GatewayConfig.js"

const SECRET = `sk-or-v1-${"ab12".repeat(16)}`
const env = ConfigProvider.fromMap(
  new Map([
    ["K1", SECRET],
    ["K2", `sk-or-v1-${"cd34".repeat(16)}`],
    ["TOK", "t0ken"],
    ["BAD", "not-a-key"],
    ["SHORT", "sk-or-abc"]
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
      // The default stack: pacing per account, health, round robin.
      assert.deepStrictEqual(c.strategy, [
        { name: "account-pacing" },
        { name: "health-aware", failureThreshold: 3 },
        { name: "round-robin" }
      ])
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

      const pacing = yield* failure({
        ...base,
        strategy: [{ name: "account-pacing", maxWaitMs: 0 }, { name: "round-robin" }]
      })
      assert.strictEqual(pacing.path, "strategy[0].maxWaitMs")
      const last = yield* failure({ ...base, strategy: [{ name: "account-pacing" }] })
      assert.strictEqual(last.path, "strategy[0].name")

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

  it.effect("each error is one short line: the field and what it must be, never Schema's type dump", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string, string]> = [
        [
          { ...base, keys: [{ id: "a", secretEnv: "K1", weight: -1 }] },
          "keys[0].weight",
          "keys[0].weight: must be a positive integer"
        ],
        [
          { ...base, keys: [{ id: "a", secretEnv: "K1", weight: "2" }] },
          "keys[0].weight",
          'keys[0].weight: must be a number (got "2")'
        ],
        [[], "(root)", '(root): must be a JSON object such as {"keys": [...]}, not an array'],
        [null, "(root)", '(root): must be a JSON object such as {"keys": [...]}, not null'],
        [{ ...base, retry: 5 }, "retry", "retry: must be an object"],
        [{ ...base, keys: {} }, "keys", "keys: must be an array"],
        [{ tokens: ["TOK"] }, "keys", "keys: is required"],
        [
          { ...base, listen: { port: 70000 } },
          "listen.port",
          "listen.port: must be a number less than or equal to 65535 (got 70000)"
        ],
        [
          { ...base, strategy: [{ name: "health-aware", recovery: "x" }, { name: "round-robin" }] },
          "strategy[0].recovery",
          'strategy[0].recovery: must be "trial" or "probe"'
        ],
        [{ ...base, retry: { budget: true } }, "retry.budget", "retry.budget: must be false or an object"],
        [
          { ...base, retry: { budget: { ratio: 2 } } },
          "retry.budget.ratio",
          "retry.budget.ratio: must be between 0 and 1 (and 2 more problems)"
        ],
        [
          { ...base, keys: [{ id: "a", secretEnv: "K1", secret: "x" }] },
          "keys[0].secret",
          "keys[0].secret: is not a known field (known: id, secretEnv, account, weight, maxConcurrency, models, baseUrl)"
        ],
        // A secret that starts right but is too short says so, not "does not hold an OpenRouter key".
        [
          { ...base, keys: [{ id: "a", secretEnv: "SHORT" }] },
          "keys[0].secretEnv",
          "keys[0].secretEnv: the value of SHORT is too short to be an OpenRouter key"
        ],
        [
          { ...base, keys: [{ id: "a", secretEnv: "BAD" }] },
          "keys[0].secretEnv",
          'keys[0].secretEnv: the value of BAD must start with "sk-or-"'
        ]
      ]
      for (const [input, path, message] of cases) {
        const e = yield* failure(input)
        assert.strictEqual(e.path, path)
        assert.strictEqual(e.message, message)
        assert.notMatch(e.message, /Expected|readonly|undefined/)
      }
    })
  )

  it.effect("any wrong file gets one short line: a path, what it must be, no type dump, no secret", () =>
    Effect.sync(() => {
      const field = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined))
      const key = fc.record(
        {
          id: field,
          secretEnv: fc.oneof(fc.constantFrom("K1", "K2", "BAD", "SHORT", "NOPE"), field),
          weight: field,
          models: field,
          baseUrl: field,
          extra: field
        },
        { requiredKeys: [] }
      )
      const strategy = fc.oneof(
        field,
        fc.array(
          fc.record(
            {
              name: fc.oneof(
                fc.constantFrom("round-robin", "health-aware", "by-model", "threshold", "nope"),
                field
              ),
              routes: field,
              threshold: field,
              recovery: field
            },
            { requiredKeys: [] }
          ),
          { maxLength: 3 }
        )
      )
      const file = fc.oneof(
        fc.jsonValue({ maxDepth: 3 }),
        fc.record(
          {
            listen: field,
            baseUrl: field,
            tokens: field,
            anonymous: field,
            accounts: field,
            keys: fc.oneof(field, fc.array(key, { maxLength: 3 })),
            strategy,
            retry: field,
            deadlines: field,
            bodyLimitBytes: field
          },
          { requiredKeys: [] }
        )
      )
      fc.assert(
        fc.property(file, (input) => {
          const result = Effect.runSync(Effect.either(decode(input)))
          if (result._tag === "Right") return
          const { message, path } = result.left
          assert.isTrue(message.startsWith(`${path}: `), message)
          assert.notInclude(message, "\n")
          assert.isBelow(message.length, 300, message)
          assert.notMatch(message, /Expected|readonly|ReadonlyArray|actual undefined/, message)
          assert.notInclude(message, SECRET)
        }),
        { numRuns: 400 }
      )
    })
  )

  it.effect("a strategy name that is an object (even one String() throws on) is refused with its path", () =>
    Effect.gen(function* () {
      // fast-check found it: Schema's union lookup calls String() on the discriminant, which
      // throws for {"toString": 0}; it must be the file's error, not a defect.
      for (const name of [{ toString: 0 }, { toString: 0, valueOf: 1 }, ["weighted"]]) {
        const error = yield* failure({ ...base, strategy: [{ name }] })
        assert.strictEqual(error.path, "strategy[0].name")
        assert.strictEqual(error.message, "strategy[0].name: must be a string")
      }
    })
  )

  it.effect("a base URL the transport could not use is refused with its path, top-level or per key", () =>
    Effect.gen(function* () {
      const top = yield* failure({ ...base, baseUrl: "http://bad host/api/v1" })
      assert.strictEqual(top.path, "baseUrl")
      assert.match(top.message, /^baseUrl: must be an http\(s\) URL/)
      const scheme = yield* failure({ ...base, baseUrl: "ftp://example.com/api/v1" })
      assert.strictEqual(scheme.path, "baseUrl")
      const perKey = yield* failure({
        ...base,
        keys: [base.keys[0], { id: "two", secretEnv: "K2", baseUrl: "http://bad host/api/v1" }]
      })
      assert.strictEqual(perKey.path, "keys[1].baseUrl")
      assert.match(perKey.message, /^keys\[1\]\.baseUrl: must be an http\(s\) URL/)
      assert.strictEqual(
        (yield* decode({ ...base, baseUrl: "http://127.0.0.1:9/api/v1/" })).baseUrl,
        "http://127.0.0.1:9/api/v1"
      )
    })
  )

  it.effect("no warning for threshold on replicas sharing Redis: it reserves within the fleet's credit", () =>
    Effect.gen(function* () {
      const redis = { url: "redis://127.0.0.1:6379/0" }
      const threshold = [{ name: "threshold", threshold: 0.01 }, { name: "round-robin" }]
      assert.deepStrictEqual(
        GatewayConfig.warnings(yield* decode({ ...base, redis, strategy: threshold })),
        []
      )
      assert.deepStrictEqual(GatewayConfig.warnings(yield* decode({ ...base, strategy: threshold })), [])
      assert.deepStrictEqual(
        GatewayConfig.warnings(yield* decode({ ...base, redis, strategy: [{ name: "credit-aware" }] })),
        []
      )
    })
  )

  it.effect("warns of a weight or maxConcurrency no strategy of the stack reads", () =>
    Effect.gen(function* () {
      const weighted = { ...base, keys: [base.keys[0], { id: "two", secretEnv: "K2", weight: 3 }] }
      const rr = GatewayConfig.warnings(yield* decode(weighted))
      assert.lengthOf(rr, 1)
      assert.match(rr[0]!, /^keys\[1\]\.weight: no effect under account-pacing > health-aware > round-robin;/)
      const hr = GatewayConfig.warnings(
        yield* decode({ ...weighted, strategy: [{ name: "health-aware" }, { name: "random" }] })
      )
      assert.match(hr[0]!, /no effect under health-aware > random/)
      assert.deepStrictEqual(
        GatewayConfig.warnings(yield* decode({ ...weighted, strategy: [{ name: "weighted" }] })),
        []
      )
      assert.deepStrictEqual(
        GatewayConfig.warnings(
          yield* decode({ ...weighted, strategy: [{ name: "sticky" }, { name: "round-robin" }] })
        ),
        []
      )
      assert.deepStrictEqual(GatewayConfig.warnings(yield* decode(base)), [])
      const capped = { ...base, keys: [{ id: "one", secretEnv: "K1", maxConcurrency: 2 }] }
      const cw = GatewayConfig.warnings(yield* decode(capped))
      assert.lengthOf(cw, 1)
      assert.match(
        cw[0]!,
        /^keys\[0\]\.maxConcurrency: no effect under account-pacing > health-aware > round-robin; add "concurrency-limited"/
      )
      assert.deepStrictEqual(
        GatewayConfig.warnings(
          yield* decode({ ...capped, strategy: [{ name: "concurrency-limited" }, { name: "round-robin" }] })
        ),
        []
      )
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
