/**
 * SSE parsing through the public client, over a fake `HttpClient` whose body arrives in whatever
 * pieces the test chooses: every split point, and random many-way splits.
 */
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, FastCheck as fc, Layer, Stream } from "effect"
import { ChatCompletion, OpenRouterClient } from "../src/index.js"
import { balancerLayer, makeKeys } from "./support.js"

const keys = makeKeys(["k1"])
const key = keys[0]!

// The body the fake upstream sends next, in these pieces.
let pieces: ReadonlyArray<Uint8Array> = []

const fakeClient = (contentType = "text/event-stream") =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((request) =>
      Effect.sync(() => {
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            for (const p of pieces) controller.enqueue(p)
            controller.close()
          }
        })
        return HttpClientResponse.fromWeb(
          request,
          new Response(body, { headers: { "content-type": contentType } })
        )
      })
    )
  )

const env = OpenRouterClient.layer.pipe(Layer.provide(balancerLayer(keys)), Layer.provide(fakeClient()))

const enc = new TextEncoder()

const run = (body: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function* () {
    pieces = body
    const client = yield* OpenRouterClient.OpenRouterClient
    const stream = yield* client.chatStreamWith(key, { model: "m", messages: [] })
    return Chunk.toReadonlyArray(yield* Stream.runCollect(stream))
  }).pipe(Effect.scoped)

// Keep-alive comments, CRLF and LF line ends, a multi-line data field, a multi-byte character,
// an `event:` field and a final usage chunk, then [DONE] and junk that must not be read.
const data = (content: string, extra = "") =>
  `{"id":"g","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}]${extra}}`
const wire =
  ": OPENROUTER PROCESSING\n\n" +
  `data: ${data("Hé")}\r\n\r\n` +
  ": OPENROUTER PROCESSING\r\n\r\n" +
  `event: message\ndata: ${data("llo ")}\n\n` +
  `data: {"id":"g","choices":[{"index":0,\r\ndata: "delta":{"content":"wörld 🌍"},"finish_reason":null}]}\n\n` +
  `data: ${data("", ',"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4,"cost":0.0042}')}\n\n` +
  "data: [DONE]\n\n" +
  "data: this is never parsed\n\n"
const bytes = enc.encode(wire)

const expectParsed = (chunks: ReadonlyArray<ChatCompletion.Chunk>) => {
  expect(chunks.length).toBe(4)
  expect(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("")).toBe("Héllo wörld 🌍")
}

layer(env)("SSE streaming", (it) => {
  it.effect("parses the whole body in one piece", () =>
    Effect.gen(function* () {
      const chunks = yield* run([bytes])
      expectParsed(chunks)
      expect((chunks[3] as { usage?: { cost?: number } }).usage?.cost).toBe(0.0042)
    })
  )

  it.effect("parses the same at every split point (bytes, so also inside UTF-8 characters and CRLF)", () =>
    Effect.gen(function* () {
      for (let i = 1; i < bytes.length; i++) {
        const chunks = yield* run([bytes.slice(0, i), bytes.slice(i)])
        expectParsed(chunks)
      }
    })
  )

  it.effect("parses the same one byte at a time", () =>
    Effect.map(run([...bytes].map((b) => Uint8Array.of(b))), expectParsed)
  )

  it.effect.prop(
    "parses the same under any many-way split",
    [fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 40 })],
    ([cuts]) =>
      Effect.gen(function* () {
        const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length]
        const pieces = points.slice(1).map((end, i) => bytes.slice(points[i]!, end))
        expectParsed(yield* run(pieces))
      })
  )

  it.effect("an in-band error chunk is a typed failure", () =>
    Effect.gen(function* () {
      const text =
        `data: ${data("partial")}\n\n` +
        `data: {"id":"g","error":{"code":502,"message":"provider went away","metadata":{"error_type":"provider_unavailable"}},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n`
      const error = yield* Effect.flip(run([enc.encode(text)]))
      expect(error._tag).toBe("ServerError")
      expect(error.message).toContain("provider went away")
    })
  )

  it.effect("finish_reason error without an error object is still a failure", () =>
    Effect.gen(function* () {
      const text = `data: ${data("a")}\n\ndata: {"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}\n\n`
      const error = yield* Effect.flip(run([enc.encode(text)]))
      expect(error._tag).toBe("ServerError")
    })
  )

  it.effect("a stream cut off before [DONE] fails as Transport", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(run([enc.encode(`data: ${data("a")}\n\ndata: ${data("b")}\n\n`)]))
      expect(error._tag).toBe("Transport")
      expect(error.message).toContain("[DONE]")
    })
  )

  it.effect("a chunk that is not JSON is InvalidResponse naming the problem", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        run([enc.encode(`data: ${data("a")}\n\ndata: {oops\n\ndata: [DONE]\n\n`)])
      )
      expect(error._tag).toBe("InvalidResponse")
      expect(error.message).toContain("not JSON")
    })
  )
})
