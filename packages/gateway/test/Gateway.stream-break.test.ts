import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const MODEL = "openai/gpt-4o-mini"

/** Every stream of both keys loses its connection after some content (the simulator's `cut`). */
const setup = Effect.gen(function* () {
  const sim = yield* Simulator.make({
    seed: 7,
    keys: simKeys(["cut-a", "cut-b"]).map((k) => ({
      ...k,
      faults: { script: ["cut" as const], loop: true }
    })),
    stream: { keepAlives: 0, chunks: 6, chunkIntervalMs: 2 }
  })
  const gw = yield* Gateway.make(yield* configFor(sim))
  return { sim, gw }
})

const settledAfterOneCall = (sim: Simulator.Handle, gw: Gateway.Gateway) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200 && (yield* gw.status).inFlightRequests > 0; i++)
      yield* Effect.sleep(Duration.millis(10))
    const status = yield* gw.status
    // Not replayed on the other key: the client had part of the answer.
    assert.strictEqual((yield* sim.stats).requests, 1)
    assert.strictEqual(status.totals.failures, 1)
    assert.strictEqual(status.inFlightRequests, 0)
  })

describe("a stream broken after its first byte", () => {
  it.scopedLive("ends with an in-band error event and a clean end, not a reset", () =>
    Effect.gen(function* () {
      const { gw, sim } = yield* setup
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ stream: true }))
      assert.strictEqual(r.status, 200)
      // Content came through before the break, then the error event ends the body.
      assert.include(r.text, '"delta"')
      const last = r.text.trim().split("\n\n").pop()!
      assert.isTrue(last.startsWith("data: "))
      const event = JSON.parse(last.slice("data: ".length))
      assert.strictEqual(event.error.type, "server_error")
      assert.strictEqual(event.error.metadata.reason, "stream_broken")
      assert.include(event.error.message, "broke after it began")
      assert.notInclude(r.text, "sk-or-")
      yield* settledAfterOneCall(sim, gw)
    })
  )

  it.scopedLive("the openai client raises it as an API error naming the break", () =>
    Effect.gen(function* () {
      const { gw, sim } = yield* setup
      const client = new OpenAI({ apiKey: TOKEN, baseURL: `${gw.url}/v1`, maxRetries: 0 })
      const outcome = yield* Effect.promise(async () => {
        const stream = await client.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "hello" }],
          stream: true
        })
        let text = ""
        try {
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ""
          return { text, error: undefined as unknown }
        } catch (e) {
          return { text, error: e }
        }
      })
      assert.isTrue(outcome.text.length > 0, "content before the break reached the client")
      assert.instanceOf(outcome.error, OpenAI.APIError)
      assert.include((outcome.error as Error).message, "broke after it began")
      yield* settledAfterOneCall(sim, gw)
    })
  )
})
