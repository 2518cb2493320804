// The gateway behind the official clients (openai, @openrouter/sdk): failover is invisible to them.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { OpenRouter } from "@openrouter/sdk"
import OpenAI from "openai"
import { MODEL, messages, setup, simKeys, TOKEN } from "./GatewaySupport.js"

describe("Gateway with the official clients", () => {
  it.scopedLive("openai: chat completion and stream, failover around a revoked key is invisible", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["good-1", "revoked", "good-2"], {
        keys: simKeys(["good-1", "revoked", "good-2"]).map((k) =>
          k.label === "revoked" ? { ...k, revoked: true } : k
        )
      })
      const client = new OpenAI({ apiKey: TOKEN, baseURL: `${gw.url}/v1`, maxRetries: 0 })
      for (let i = 0; i < 6; i++) {
        const c = yield* Effect.promise(() => client.chat.completions.create({ model: MODEL, messages }))
        assert.strictEqual(c.object, "chat.completion")
        assert.isTrue((c.choices[0]?.message.content ?? "").length > 0)
      }
      const stream = yield* Effect.promise(() =>
        client.chat.completions.create({ model: MODEL, messages, stream: true })
      )
      let text = ""
      yield* Effect.promise(async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ""
      })
      assert.isTrue(text.length > 0)
      const stats = yield* sim.stats
      // The revoked key was tried and answered 401, but every client call succeeded.
      assert.isTrue((stats.keys["revoked"]!.byOutcome["401"] ?? 0) >= 1)
      assert.strictEqual(
        (stats.keys["good-1"]!.byOutcome["200"] ?? 0) + (stats.keys["good-2"]!.byOutcome["200"] ?? 0),
        7
      )
      const status = yield* gw.status
      const revoked = status.keys.find((k) => k.id === "revoked")!
      assert.isTrue((revoked.errors["Unauthorized"] ?? 0) >= 1)
    })
  )

  it.scopedLive("@openrouter/sdk: a chat completion through the gateway's /api/v1, failover invisible", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1", "k2"], {
        keys: simKeys(["k1", "k2"]).map((k) => (k.label === "k1" ? { ...k, revoked: true } : k))
      })
      const client = new OpenRouter({ apiKey: TOKEN, serverURL: `${gw.url}/api/v1` })
      for (let i = 0; i < 3; i++) {
        const result = yield* Effect.promise(() =>
          client.chat.send({ chatRequest: { model: MODEL, messages } })
        )
        if (Symbol.asyncIterator in result) return assert.fail("expected a JSON answer")
        const content = result.choices[0]?.message.content
        assert.isTrue(typeof content === "string" && content.length > 0)
      }
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["k2"]!.byOutcome["200"], 3)
      assert.isTrue((stats.keys["k1"]!.byOutcome["401"] ?? 0) >= 1)
    })
  )

  it.scopedLive("@openrouter/sdk: a stream through the gateway's /api/v1", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1", "k2"], {
        keys: simKeys(["k1", "k2"]).map((k) => (k.label === "k1" ? { ...k, revoked: true } : k))
      })
      const client = new OpenRouter({ apiKey: TOKEN, serverURL: `${gw.url}/api/v1` })
      let text = ""
      for (let i = 0; i < 2; i++) {
        const stream = yield* Effect.promise(() =>
          client.chat.send({ chatRequest: { model: MODEL, messages, stream: true } })
        )
        // The SDK types both overloads' answers as the union of a result and a stream.
        if (!(Symbol.asyncIterator in stream)) return assert.fail("expected a stream")
        yield* Effect.promise(async () => {
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ""
        })
      }
      assert.isTrue(text.length > 0)
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["k2"]!.byOutcome["200"], 2)
      assert.isTrue((stats.keys["k1"]!.byOutcome["401"] ?? 0) >= 1)
    })
  )
})
