import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import OpenAI from "openai"
import * as Simulator from "../src/Simulator.js"

// The `openai` npm client, pointed at the simulator with nothing else changed, reads every
// route's answer: the shapes are the real ones, not merely what our own client accepts.

const MINI = "openai/gpt-4o-mini"
const EMBED = "openai/text-embedding-3-small"

const client = (sim: Simulator.Handle) =>
  new OpenAI({ baseURL: sim.baseUrl, apiKey: Redacted.value(sim.keys[0]!.secret), maxRetries: 0 })

const simulator = Simulator.make({
  keys: [{ label: "a", secret: Simulator.simulatedSecret(13, 0) }],
  stream: { keepAlives: 1, chunks: 3, chunkIntervalMs: 0 }
})

describe("Simulator with the openai client", () => {
  it.scopedLive("embeddings.create decodes the default base64 form, and usage.cost comes through", () =>
    Effect.gen(function* () {
      const openai = client(yield* simulator)
      const res = yield* Effect.promise(() =>
        openai.embeddings.create({ model: EMBED, input: ["abcd", "efgh"] })
      )
      assert.strictEqual(res.data.length, 2)
      assert.strictEqual(res.data[0]!.embedding.length, 32)
      assert.closeTo(Math.hypot(...res.data[0]!.embedding), 1, 1e-6)
      assert.strictEqual((res.usage as { cost?: number }).cost, 4e-8)
      const floats = yield* Effect.promise(() =>
        openai.embeddings.create({ model: EMBED, input: "abcd", encoding_format: "float" })
      )
      assert.deepStrictEqual(floats.data[0]!.embedding, res.data[0]!.embedding)
    })
  )

  it.scopedLive("responses.create, plain and streamed", () =>
    Effect.gen(function* () {
      const openai = client(yield* simulator)
      const plain = yield* Effect.promise(() =>
        openai.responses.create({ model: MINI, input: "hello", max_output_tokens: 8 })
      )
      assert.strictEqual(plain.status, "completed")
      assert.isAbove(plain.output_text.length, 0)
      assert.strictEqual(plain.usage?.output_tokens, 8)
      const events = yield* Effect.promise(async () => {
        const stream = await openai.responses.create({
          model: MINI,
          input: "hello",
          max_output_tokens: 8,
          stream: true
        })
        const seen: Array<{ type: string; delta?: string }> = []
        for await (const event of stream) seen.push(event as { type: string; delta?: string })
        return seen
      })
      assert.strictEqual(events[0]!.type, "response.created")
      assert.strictEqual(events[events.length - 1]!.type, "response.completed")
      const text = events
        .filter((e) => e.type === "response.output_text.delta")
        .map((e) => e.delta)
        .join("")
      assert.strictEqual(text, plain.output_text)
      // The SDK's own stream helper assembles the final response from the same events.
      const final = yield* Effect.promise(() =>
        openai.responses.stream({ model: MINI, input: "hello", max_output_tokens: 8 }).finalResponse()
      )
      assert.strictEqual(final.output_text, plain.output_text)
    })
  )

  it.scopedLive("models.retrieve and models.list, and legacy completions", () =>
    Effect.gen(function* () {
      const openai = client(yield* simulator)
      const model = yield* Effect.promise(() => openai.models.retrieve(MINI))
      assert.strictEqual(model.id, MINI)
      assert.strictEqual(model.object, "model")
      const list = yield* Effect.promise(() => openai.models.list())
      assert.include(
        list.data.map((m) => m.id),
        EMBED
      )
      const completion = yield* Effect.promise(() =>
        openai.completions.create({ model: MINI, prompt: "hi", max_tokens: 6 })
      )
      assert.isAbove(completion.choices[0]!.text.length, 0)
      const streamed = yield* Effect.promise(async () => {
        const stream = await openai.completions.create({
          model: MINI,
          prompt: "hi",
          max_tokens: 6,
          stream: true
        })
        let text = ""
        for await (const chunk of stream) text += chunk.choices[0]?.text ?? ""
        return text
      })
      assert.strictEqual(streamed, completion.choices[0]!.text)
      const chat = yield* Effect.promise(() =>
        openai.chat.completions.create({ model: MINI, messages: [{ role: "user", content: "hi" }] })
      )
      assert.strictEqual(chat.choices[0]!.message.role, "assistant")
    })
  )
})
