// The simulator's SSE streams: keep-alives, the usage chunk, [DONE], an in-band error.
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import { basic, chat, costOf, MINI, messages, secret } from "./support.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

describe("Simulator", () => {
  it.scopedLive("streams SSE with keep-alive comments, a final usage chunk and [DONE]", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ stream: { keepAlives: 2, chunks: 3, chunkIntervalMs: 1 } }))
      const res = yield* chat(sim, secret(0), { model: MINI, messages, stream: true, max_tokens: 10 })
      assert.strictEqual(res.status, 200)
      assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/)
      assert.isTrue(res.text.endsWith("\n\n"))
      const events = res.text.slice(0, -2).split("\n\n")
      assert.deepStrictEqual(events.slice(0, 2), [": OPENROUTER PROCESSING", ": OPENROUTER PROCESSING"])
      assert.strictEqual(events[events.length - 1], "data: [DONE]")
      const chunks = events.slice(2, -1).map((e) => {
        assert.isTrue(e.startsWith("data: "))
        return JSON.parse(e.slice(6))
      })
      assert.strictEqual(chunks.length, 4) // three content chunks and the final one
      for (const c of chunks) assert.strictEqual(c.id, res.headers.get("x-generation-id"))
      const last = chunks[chunks.length - 1]
      assert.strictEqual(last.choices[0].finish_reason, "stop")
      assert.closeTo(last.usage.cost, costOf(10), 1e-15)
      for (const c of chunks.slice(0, -1)) assert.isUndefined(c.usage)
      const streamed = chunks.map((c) => c.choices[0].delta.content).join("")
      const plain = yield* chat(sim, secret(0), { model: MINI, messages, max_tokens: 10 })
      assert.strictEqual(streamed, plain.json.choices[0].message.content)
      assert.closeTo((yield* sim.stats).keys.a!.spend, 2 * costOf(10), 1e-15)
    })
  )

  it.scopedLive("fails a stream in-band after some content with finish_reason error", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({ keys: [{ label: "m", secret: secret(0), faults: { script: ["midstream", "midstream"] } }] })
      )
      const res = yield* chat(sim, secret(0), { model: MINI, messages, stream: true })
      assert.strictEqual(res.status, 200)
      const data = res.text
        .split("\n\n")
        .filter((e) => e.startsWith("data: "))
        .map((e) => e.slice(6))
      assert.notInclude(data, "[DONE]")
      const chunks = data.map((d) => JSON.parse(d))
      const last = chunks[chunks.length - 1]
      assert.isAbove(chunks.length, 1)
      assert.isTrue(chunks.slice(0, -1).every((c) => c.choices[0].delta.content.length > 0))
      assert.strictEqual(last.error.code, 502)
      assert.strictEqual(last.error.metadata.error_type, "provider_unavailable")
      assert.strictEqual(last.choices[0].finish_reason, "error")
      // A non-streamed request with the same fault fails before the first byte instead.
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 502)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.m!.byOutcome, { midstream: 1, "502": 1 })
      assert.strictEqual(stats.keys.m!.spend, 0)
    })
  )
})
