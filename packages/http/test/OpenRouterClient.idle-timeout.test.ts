/**
 * `streamIdleTimeout`: a stream that goes quiet fails with `Timeout` (before its first chunk it
 * fails over; after it, no replay). The fake upstream's body is an Effect stream paced by the
 * TestClock, so the timings are exact.
 */
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Either, Fiber, Layer, Ref, Stream, TestClock } from "effect"
import { OpenRouterClient } from "../src/index.js"
import { balancerLayer, makeKeys, Recorder } from "./support.js"

const enc = new TextEncoder()
const data = (content: string) =>
  enc.encode(
    `data: {"id":"g","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}]}\n\n`
  )
const keepAlive = enc.encode(": OPENROUTER PROCESSING\n\n")
const done = enc.encode("data: [DONE]\n\n")

/** After `ms` on the (test) clock, these bytes. */
const after = (ms: number, bytes: Uint8Array) => Stream.fromEffect(Effect.as(Effect.sleep(ms), bytes))

/** A fake upstream: the n-th request (from 0) gets `bodies[n]`. Counts requests. */
const upstream = (bodies: ReadonlyArray<Stream.Stream<Uint8Array>>, seen: Ref.Ref<number>) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(Effect.runtime<never>(), (runtime) =>
      HttpClient.make((request) =>
        Effect.flatMap(
          Ref.getAndUpdate(seen, (n) => n + 1),
          (n) =>
            Effect.sync(() =>
              HttpClientResponse.fromWeb(
                request,
                new Response(Stream.toReadableStreamRuntime(bodies[n] ?? Stream.empty, runtime), {
                  headers: { "content-type": "text/event-stream" }
                })
              )
            )
        )
      )
    )
  )

const env = (bodies: ReadonlyArray<Stream.Stream<Uint8Array>>, seen: Ref.Ref<number>) =>
  OpenRouterClient.layer.pipe(
    Layer.provideMerge(balancerLayer(makeKeys(["k1", "k2"]))),
    Layer.provide(upstream(bodies, seen)),
    Layer.provide(OpenRouterClient.layerClientConfig({ streamIdleTimeout: "100 millis" }))
  )

const collect = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const fiber = yield* client.chatStream({ model: "m", messages: [] }).pipe(
    Stream.map((c) => c.choices[0]?.delta?.content ?? ""),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray),
    Effect.either,
    Effect.fork
  )
  yield* TestClock.adjust("10 seconds")
  return yield* Fiber.join(fiber)
})

const reports = Effect.flatMap(Recorder, (r) => Ref.get(r.reports))

describe("streamIdleTimeout", () => {
  it.effect("keep-alives and chunks keep a slow stream alive however long it runs", () =>
    Effect.gen(function* () {
      const seen = yield* Ref.make(0)
      const slow = Stream.concatAll(
        Chunk.make(
          after(90, data("a")),
          after(90, keepAlive),
          after(90, keepAlive),
          after(90, data("b")),
          after(90, done)
        )
      )
      const result = yield* collect.pipe(Effect.provide(env([slow], seen)))
      expect(result).toEqual(Either.right(["a", "b"]))
      expect(yield* Ref.get(seen)).toBe(1)
    })
  )

  it.effect("silence after the first chunk fails the stream with Timeout, without replay", () =>
    Effect.gen(function* () {
      const seen = yield* Ref.make(0)
      const stalls = Stream.concat(Stream.make(data("a")), after(150, data("late")))
      const result = yield* Effect.gen(function* () {
        const r = yield* collect
        return { r, reports: yield* reports }
      }).pipe(Effect.provide(env([stalls, Stream.make(data("other"), done)], seen)))
      expect(result.r._tag).toBe("Left")
      if (result.r._tag === "Left") {
        expect(result.r.left._tag).toBe("Timeout")
        expect(result.r.left.message).toContain(Duration.format(Duration.millis(100)))
      }
      expect(yield* Ref.get(seen)).toBe(1)
      expect(result.reports).toEqual([{ key: "k1", tag: "Failure", error: "Timeout" }])
    })
  )

  it.effect("silence before the first chunk fails over to another key", () =>
    Effect.gen(function* () {
      const seen = yield* Ref.make(0)
      const result = yield* Effect.gen(function* () {
        const r = yield* collect
        return { r, reports: yield* reports }
      }).pipe(Effect.provide(env([after(150, data("late")), Stream.make(data("b"), done)], seen)))
      expect(result.r).toEqual(Either.right(["b"]))
      expect(yield* Ref.get(seen)).toBe(2)
      expect(result.reports).toEqual([
        { key: "k1", tag: "Failure", error: "Timeout" },
        { key: "k2", tag: "Success", cost: undefined }
      ])
    })
  )
})
