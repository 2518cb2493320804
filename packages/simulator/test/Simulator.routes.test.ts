import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Simulator from "../src/Simulator.js"
import { get, post, request, sseData } from "./http.js"

// Every route an OpenAI-compatible client calls, with plain fetch over loopback.

const secret = (i: number) => Simulator.simulatedSecret(11, i)
const MINI = "openai/gpt-4o-mini"
const EMBED = "openai/text-embedding-3-small"

const make = (overrides: Partial<Simulator.Config> = {}) =>
  Simulator.make({
    keys: [
      { label: "a", account: "one", secret: secret(0) },
      { label: "b", account: "one", secret: secret(1) },
      { label: "dead", account: "one", secret: secret(2), revoked: true }
    ],
    stream: { keepAlives: 1, chunks: 3, chunkIntervalMs: 1 },
    ...overrides
  })

/** SSE events as `[event name, data]`, skipping keep-alive comments. */
const namedEvents = (text: string): Array<readonly [string, any]> =>
  text
    .split("\n\n")
    .filter((e) => e.length > 0 && !e.startsWith(":"))
    .map((e) => {
      const lines = e.split("\n")
      const name = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? ""
      return [name, JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6))] as const
    })

describe("Simulator routes", () => {
  it.scopedLive("answers embeddings in OpenAI's shape with usage.cost, as floats or base64", () =>
    Effect.gen(function* () {
      const sim = yield* make()
      const res = yield* post(sim, "/embeddings", secret(0), { model: EMBED, input: ["abcde", "hello"] })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.json.object, "list")
      assert.strictEqual(res.json.model, EMBED)
      assert.strictEqual(res.headers.get("x-generation-id"), res.json.id)
      assert.deepStrictEqual(
        res.json.data.map((d: any) => [d.object, d.index]),
        [
          ["embedding", 0],
          ["embedding", 1]
        ]
      )
      const v: Array<number> = res.json.data[0].embedding
      assert.strictEqual(v.length, 32)
      assert.closeTo(Math.hypot(...v), 1, 1e-6)
      // 2 + 2 tokens at $0.02 per million.
      assert.deepStrictEqual(res.json.usage, { prompt_tokens: 4, total_tokens: 4, cost: 8e-8 })
      const again = yield* post(sim, "/embeddings", secret(0), {
        model: EMBED,
        input: "abcde",
        dimensions: 8
      })
      assert.strictEqual(again.json.data.length, 1)
      const base64 = yield* post(sim, "/embeddings", secret(0), {
        model: EMBED,
        input: "abcde",
        dimensions: 8,
        encoding_format: "base64"
      })
      const bytes = Buffer.from(base64.json.data[0].embedding, "base64")
      const decoded = Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, 8))
      assert.deepStrictEqual(decoded, again.json.data[0].embedding)
      const gen = yield* get(sim, `/generation?id=${res.json.id}`, secret(1))
      assert.strictEqual(gen.json.data.total_cost, 8e-8)
      const bad = yield* post(sim, "/embeddings", secret(0), { model: EMBED })
      assert.strictEqual(bad.status, 400)
      assert.include(bad.json.error.message, "input")
      const stats = yield* sim.stats
      assert.strictEqual(stats.byRoute.embeddings, 4)
      assert.strictEqual(stats.keys.a!.spend, 1.6e-7) // 4 + 2 + 2 tokens, exactly
    })
  )

  it.scopedLive("answers legacy text completions, plain and streamed", () =>
    Effect.gen(function* () {
      const sim = yield* make()
      const plain = yield* post(sim, "/completions", secret(0), {
        model: MINI,
        prompt: "Say hi",
        max_tokens: 10
      })
      assert.strictEqual(plain.status, 200)
      assert.strictEqual(plain.json.object, "text_completion")
      assert.strictEqual(plain.json.choices[0].finish_reason, "stop")
      const text: string = plain.json.choices[0].text
      assert.isAbove(text.length, 0)
      assert.strictEqual(plain.json.usage.prompt_tokens, 2)
      assert.strictEqual(plain.json.usage.completion_tokens, 10)
      assert.closeTo(plain.json.usage.cost, 2 * 0.15e-6 + 10 * 0.6e-6, 1e-15)
      const streamed = yield* post(sim, "/completions", secret(0), {
        model: MINI,
        prompt: ["Say", " hi"],
        max_tokens: 10,
        stream: true
      })
      assert.match(streamed.headers.get("content-type") ?? "", /^text\/event-stream/)
      assert.isTrue(streamed.text.startsWith(": OPENROUTER PROCESSING\n\n"))
      const data = sseData(streamed.text)
      assert.strictEqual(data[data.length - 1], "[DONE]")
      const chunks = data.slice(0, -1)
      for (const c of chunks) assert.strictEqual(c.object, "text_completion")
      assert.strictEqual(chunks.map((c) => c.choices[0].text).join(""), text)
      assert.strictEqual(chunks[chunks.length - 1].choices[0].finish_reason, "stop")
      assert.closeTo(chunks[chunks.length - 1].usage.cost, plain.json.usage.cost, 1e-15)
      const noPrompt = yield* post(sim, "/completions", secret(0), { model: MINI })
      assert.strictEqual(noPrompt.status, 400)
      assert.include(noPrompt.json.error.message, "prompt")
    })
  )

  it.scopedLive("fails a streamed completion in-band after some text, unbilled", () =>
    Effect.gen(function* () {
      const sim = yield* make({
        keys: [{ label: "m", secret: secret(0), faults: { script: ["midstream"] } }]
      })
      const res = yield* post(sim, "/completions", secret(0), { model: MINI, prompt: "x", stream: true })
      assert.strictEqual(res.status, 200)
      const data = sseData(res.text)
      assert.notInclude(data, "[DONE]")
      const last = data[data.length - 1]
      assert.isAbove(data.length, 1)
      assert.strictEqual(last.error.code, 502)
      assert.strictEqual(last.choices[0].finish_reason, "error")
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.m!.byOutcome, { midstream: 1 })
      assert.strictEqual(stats.keys.m!.spend, 0)
    })
  )

  it.scopedLive("answers the Responses API with a response object and usage.cost", () =>
    Effect.gen(function* () {
      const sim = yield* make()
      const res = yield* post(sim, "/responses", secret(0), {
        model: MINI,
        input: [{ type: "message", role: "user", content: [{ type: "input_text", text: "hello world!" }] }],
        instructions: "Be brief",
        max_output_tokens: 12
      })
      assert.strictEqual(res.status, 200)
      const r = res.json
      assert.strictEqual(r.object, "response")
      assert.strictEqual(r.status, "completed")
      assert.match(r.id, /^resp_/)
      assert.strictEqual(r.model, MINI)
      assert.strictEqual(r.instructions, "Be brief")
      assert.strictEqual(r.max_output_tokens, 12)
      assert.strictEqual(r.output.length, 1)
      assert.strictEqual(r.output[0].type, "message")
      assert.strictEqual(r.output[0].role, "assistant")
      assert.strictEqual(r.output[0].content[0].type, "output_text")
      assert.isAbove(r.output[0].content[0].text.length, 0)
      // One item (4) + 12 characters (3) + instructions (2).
      assert.strictEqual(r.usage.input_tokens, 9)
      assert.strictEqual(r.usage.output_tokens, 12)
      assert.strictEqual(r.usage.total_tokens, 21)
      assert.closeTo(r.usage.cost, 9 * 0.15e-6 + 12 * 0.6e-6, 1e-15)
      const gen = yield* get(sim, `/generation?id=${res.headers.get("x-generation-id")}`, secret(0))
      assert.strictEqual(gen.json.data.tokens_prompt, 9)
      const plainText = yield* post(sim, "/responses", secret(0), { model: MINI, input: "hi" })
      assert.strictEqual(plainText.status, 200)
      assert.strictEqual(plainText.json.usage.output_tokens, 32)
      assert.strictEqual((yield* post(sim, "/responses", secret(0), { model: MINI })).status, 400)
    })
  )

  it.scopedLive("streams the Responses API as response.* events", () =>
    Effect.gen(function* () {
      const sim = yield* make()
      const plain = yield* post(sim, "/responses", secret(0), {
        model: MINI,
        input: "hi",
        max_output_tokens: 10
      })
      const res = yield* post(sim, "/responses", secret(0), {
        model: MINI,
        input: "hi",
        max_output_tokens: 10,
        stream: true
      })
      assert.strictEqual(res.status, 200)
      assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/)
      const events = namedEvents(res.text)
      for (const [name, data] of events) assert.strictEqual(data.type, name)
      assert.deepStrictEqual(
        events.map(([_, d]) => d.sequence_number),
        events.map((_, i) => i)
      )
      const deltas = events.filter(([n]) => n === "response.output_text.delta")
      assert.strictEqual(deltas.length, 3)
      assert.deepStrictEqual(
        events.map(([n]) => n).filter((n) => n !== "response.output_text.delta"),
        [
          "response.created",
          "response.in_progress",
          "response.output_item.added",
          "response.content_part.added",
          "response.output_text.done",
          "response.content_part.done",
          "response.output_item.done",
          "response.completed"
        ]
      )
      const text = plain.json.output[0].content[0].text
      assert.strictEqual(deltas.map(([_, d]) => d.delta).join(""), text)
      const byName = new Map(events)
      assert.strictEqual(byName.get("response.created").response.status, "in_progress")
      assert.strictEqual(byName.get("response.output_text.done").text, text)
      const completed = byName.get("response.completed").response
      assert.strictEqual(completed.status, "completed")
      assert.strictEqual(completed.output[0].content[0].text, text)
      assert.closeTo(completed.usage.cost, plain.json.usage.cost, 1e-15)
      assert.notInclude(res.text, "[DONE]")
    })
  )

  it.scopedLive("fails a streamed response in-band with an error event and response.failed, unbilled", () =>
    Effect.gen(function* () {
      const sim = yield* make({
        keys: [{ label: "m", secret: secret(0), faults: { script: ["midstream", "midstream"] } }]
      })
      const res = yield* post(sim, "/responses", secret(0), { model: MINI, input: "hi", stream: true })
      assert.strictEqual(res.status, 200)
      const names = namedEvents(res.text).map(([n]) => n)
      assert.include(names, "response.output_text.delta")
      assert.deepStrictEqual(names.slice(-2), ["error", "response.failed"])
      assert.notInclude(names, "response.completed")
      // Not streamed: the same fault fails before the first byte.
      assert.strictEqual(
        (yield* post(sim, "/responses", secret(0), { model: MINI, input: "hi" })).status,
        502
      )
      assert.strictEqual((yield* sim.stats).keys.m!.spend, 0)
    })
  )

  it.scopedLive("sends an error as the first and only event of a 200, or a 200 that is not JSON", () =>
    Effect.gen(function* () {
      const sim = yield* make({
        keys: [
          {
            label: "e",
            secret: secret(0),
            faults: { script: ["errorfirst", "errorfirst", "errorfirst", "errorfirst", "badjson", "badjson"] }
          }
        ]
      })
      const chat = yield* post(sim, "/chat/completions", secret(0), {
        model: MINI,
        messages: [{ role: "user", content: "hi" }],
        stream: true
      })
      assert.strictEqual(chat.status, 200)
      const data = sseData(chat.text)
      assert.strictEqual(data.length, 1)
      assert.strictEqual(data[0].error.code, 502)
      assert.strictEqual(data[0].choices[0].finish_reason, "error")
      const completion = sseData(
        (yield* post(sim, "/completions", secret(0), { model: MINI, prompt: "x", stream: true })).text
      )
      assert.deepStrictEqual(
        completion.map((c) => c.choices[0].finish_reason),
        ["error"]
      )
      const response = yield* post(sim, "/responses", secret(0), { model: MINI, input: "x", stream: true })
      assert.deepStrictEqual(
        namedEvents(response.text).map(([n]) => n),
        ["error", "response.failed"]
      )
      const plain = yield* post(sim, "/chat/completions", secret(0), {
        model: MINI,
        messages: [{ role: "user", content: "hi" }]
      })
      assert.strictEqual(plain.status, 200)
      assert.strictEqual(plain.json.error.metadata.error_type, "provider_unavailable")
      const garbage = yield* post(sim, "/embeddings", secret(0), { model: EMBED, input: "x" })
      assert.strictEqual(garbage.status, 200)
      assert.isUndefined(garbage.json)
      const garbageStream = yield* post(sim, "/responses", secret(0), {
        model: MINI,
        input: "x",
        stream: true
      })
      assert.strictEqual(garbageStream.status, 200)
      assert.throws(() => sseData(garbageStream.text))
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.e!.byOutcome, { errorfirst: 4, badjson: 2 })
      assert.strictEqual(stats.keys.e!.spend, 0)
    })
  )

  it.scopedLive("cuts a stream's connection after some content, with no error event", () =>
    Effect.gen(function* () {
      const sim = yield* make({
        keys: [{ label: "c", secret: secret(0), faults: { script: ["cut", "cut"] } }]
      })
      const read = (stream: boolean) =>
        Effect.promise(async () => {
          let received = ""
          try {
            const res = await fetch(`${sim.baseUrl}/chat/completions`, {
              method: "POST",
              headers: { authorization: `Bearer ${secret(0)}`, "content-type": "application/json" },
              body: JSON.stringify({ model: MINI, messages: [{ role: "user", content: "hi" }], stream })
            })
            const reader = res.body!.getReader()
            for (;;) {
              const { done, value } = await reader.read()
              if (done) return { received, failed: false }
              received += Buffer.from(value).toString("utf8")
            }
          } catch {
            return { received, failed: true }
          }
        })
      const streamed = yield* read(true)
      assert.isTrue(streamed.failed)
      assert.include(streamed.received, '"content":"sim')
      assert.notInclude(streamed.received, "[DONE]")
      assert.notInclude(streamed.received, '"error"')
      const plain = yield* read(false)
      assert.isTrue(plain.failed)
      assert.strictEqual(plain.received, "")
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.c!.byOutcome, { cut: 1, reset: 1 })
      assert.strictEqual(stats.keys.c!.spend, 0)
    })
  )

  it.scopedLive("serves the model catalogue without a key", () =>
    Effect.gen(function* () {
      const sim = yield* make()
      const list = yield* get(sim, "/models")
      assert.strictEqual(list.status, 200)
      assert.includeMembers(
        list.json.data.map((m: any) => m.id),
        [MINI, EMBED]
      )
      const one = yield* get(sim, `/models/${MINI}`)
      assert.strictEqual(one.status, 200)
      assert.strictEqual(one.json.id, MINI)
      assert.strictEqual(one.json.object, "model")
      assert.strictEqual(one.json.owned_by, "openai")
      assert.strictEqual(one.json.pricing.completion, "0.0000006")
      const endpoints = yield* get(sim, `/models/${MINI}/endpoints`)
      assert.strictEqual(endpoints.json.data.id, MINI)
      assert.strictEqual(endpoints.json.data.endpoints[0].provider_name, "SimProvider")
      assert.strictEqual(endpoints.json.data.endpoints[0].pricing.prompt, "0.00000015")
      assert.strictEqual((yield* get(sim, "/models/openai/nope")).status, 404)
      assert.strictEqual((yield* request(`${sim.baseUrl}/models/${MINI}`, { method: "DELETE" })).status, 405)
      assert.strictEqual((yield* sim.stats).requests, 0) // free: not an inference request
    })
  )

  it.scopedLive("applies keys, rate windows, credit and faults to every route alike", () =>
    Effect.gen(function* () {
      const sim = yield* make({
        keys: [
          { label: "a", account: "one", secret: secret(0), faults: { script: ["ok", "503"] } },
          { label: "dead", account: "one", secret: secret(2), revoked: true },
          { label: "broke", account: "two", secret: secret(3), limit: 0 }
        ],
        accounts: { one: { rpm: 2, windowMs: 3_600_000 } }
      })
      const bodies = {
        "/embeddings": { model: EMBED, input: "x" },
        "/completions": { model: MINI, prompt: "x" },
        "/responses": { model: MINI, input: "x" }
      }
      for (const [path, body] of Object.entries(bodies)) {
        assert.strictEqual((yield* post(sim, path, secret(2), body)).status, 401)
        const broke = yield* post(sim, path, secret(3), body)
        assert.strictEqual(broke.status, 402)
        assert.strictEqual(broke.json.error.metadata.limit_source, "openrouter_key_limit")
        assert.strictEqual((yield* post(sim, path, "sk-or-v1-unknown", body)).status, 401)
      }
      assert.strictEqual((yield* post(sim, "/embeddings", secret(0), bodies["/embeddings"])).status, 200)
      const failed = yield* post(sim, "/completions", secret(0), bodies["/completions"])
      assert.strictEqual(failed.status, 503)
      assert.strictEqual(failed.headers.get("retry-after"), "1")
      const limited = yield* post(sim, "/responses", secret(0), bodies["/responses"])
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.headers.get("x-ratelimit-limit"), "2")
      assert.match(limited.headers.get("x-ratelimit-reset") ?? "", /^\d{13}$/)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.byRoute, { embeddings: 4, completions: 4, responses: 4 })
      assert.deepStrictEqual(stats.keys.a!.byOutcome, { "200": 1, "503": 1, "429": 1 })
      assert.strictEqual(stats.unauthenticated, 3)
      // GET on a POST route.
      assert.strictEqual((yield* get(sim, "/embeddings", secret(0))).status, 405)
    })
  )
})
