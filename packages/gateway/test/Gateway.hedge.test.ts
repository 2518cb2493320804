/**
 * Hedged requests (issue 14: Trouble's p99 was its 2 s stalls). A key that stalls every request
 * for 3 s, beside a steady one: with a hedge delay of 150 ms every request is answered in about
 * the hedge delay plus normal latency, once (plain and streamed, through the `openai` client),
 * the stalled attempt is aborted upstream (the simulator's in-flight count is back to 0 long
 * before the stall would end), and the hedge rate cap holds.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const MODEL = "openai/gpt-4o-mini"
const STALL_MS = 3_000
const HEDGE_MS = 150

/** `staller` holds every request 3 s before answering; `steady` answers at once. */
const setup = (hedge: Record<string, unknown> | false) =>
  Effect.gen(function* () {
    const sim = yield* Simulator.make({
      seed: 7,
      keys: simKeys(["staller", "steady"]).map((k) =>
        k.label === "staller"
          ? { ...k, faults: { script: ["stall" as const], loop: true, stallMs: STALL_MS } }
          : k
      ),
      latency: { kind: "fixed", ms: 5 },
      stream: { keepAlives: 0, chunks: 6, chunkIntervalMs: 2 }
    })
    const gw = yield* Gateway.make(yield* configFor(sim, { hedge }))
    return { sim, gw }
  })

/** Every request of the gateway and every upstream request of the simulator done. */
const quiet = (sim: Simulator.Handle, gw: Gateway.Gateway) =>
  Effect.gen(function* () {
    for (let i = 0; i < 50; i++) {
      const [s, status] = [yield* sim.stats, yield* gw.status]
      if (s.inFlight === 0 && status.inFlightRequests === 0 && status.keys.every((k) => k.inFlight === 0))
        return
      yield* Effect.sleep(Duration.millis(10))
    }
    assert.fail("in-flight counts did not return to 0 within 500 ms (the stall lasts 3 s)")
  })

const timed = <A>(f: () => Promise<A>) =>
  Effect.promise(async () => {
    const t0 = performance.now()
    const a = await f()
    return { a, ms: performance.now() - t0 }
  })

const N = 8

describe("hedged requests", () => {
  it.scopedLive(
    "a stalled attempt is hedged on the other key: one answer each, in about the hedge delay",
    () =>
      Effect.gen(function* () {
        const { gw, sim } = yield* setup({ afterMs: HEDGE_MS, ratio: 1, burst: 100 })
        const client = new OpenAI({ apiKey: TOKEN, baseURL: `${gw.url}/v1`, maxRetries: 0 })
        const results = yield* Effect.all(
          Array.from({ length: N }, () =>
            timed(() =>
              client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }] })
            )
          ),
          { concurrency: 2 }
        )
        // Without hedging half of them would take the 3 s stall.
        for (const { a, ms } of results) {
          assert.isString(a.choices[0]!.message.content)
          assert.isBelow(ms, HEDGE_MS + 1_000)
        }
        const status = yield* gw.status
        // Round robin put about half the first attempts on the staller; each was hedged and won.
        assert.isAtLeast(status.totals.hedges.won, N / 2 - 1)
        assert.strictEqual(status.totals.hedges.lost, 0)
        assert.strictEqual(status.totals.successes, N)
        // A stall is not the key's failure: cancelled, not counted against it.
        assert.strictEqual(status.totals.failures, 0)
        const staller = status.keys.find((k) => k.id === "staller")!
        assert.strictEqual(staller.failures, 0)
        // The losers were aborted upstream: nothing in flight long before the stalls would end.
        yield* quiet(sim, gw)
        const stats = yield* sim.stats
        // One answer per request: as many answers the simulator gave as the client received.
        assert.strictEqual(stats.byOutcome["200"], N)
        assert.strictEqual(stats.byOutcome["stall"], status.totals.hedges.won)
        const metrics = yield* gw.metrics
        assert.match(metrics, /or_balancer_hedges_total\{outcome="won"\} [1-9]/)
      })
  )

  it.scopedLive("a hedged stream reaches the client once, through the openai client and raw", () =>
    Effect.gen(function* () {
      const { gw, sim } = yield* setup({ afterMs: HEDGE_MS, ratio: 1, burst: 100 })
      const client = new OpenAI({ apiKey: TOKEN, baseURL: `${gw.url}/v1`, maxRetries: 0 })
      for (let i = 0; i < 4; i++) {
        const { a: chunks, ms } = yield* timed(async () => {
          const stream = await client.chat.completions.create({
            model: MODEL,
            messages: [{ role: "user", content: "hi" }],
            stream: true
          })
          const out: Array<OpenAI.ChatCompletionChunk> = []
          for await (const chunk of stream) out.push(chunk)
          return out
        })
        assert.isBelow(ms, HEDGE_MS + 1_000)
        // One completion: every chunk from the same answer, one final chunk.
        assert.strictEqual(new Set(chunks.map((c) => c.id)).size, 1)
        assert.strictEqual(chunks.filter((c) => c.choices[0]?.finish_reason != null).length, 1)
      }
      for (let i = 0; i < 4; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ stream: true }))
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.text.split("data: [DONE]").length - 1, 1)
        const ids = r.text
          .split("\n")
          .filter((l) => l.startsWith("data: {"))
          .map((l) => JSON.parse(l.slice(6)).id)
        assert.strictEqual(new Set(ids).size, 1)
      }
      const status = yield* gw.status
      assert.isAtLeast(status.totals.hedges.won, 3)
      yield* quiet(sim, gw)
      assert.strictEqual((yield* sim.stats).byOutcome["200"], 8)
    })
  )

  it.scopedLive("the hedge rate cap holds: at most burst + ratio × requests hedges", () =>
    Effect.gen(function* () {
      const { gw, sim } = yield* setup({ afterMs: 100, ratio: 0.1, burst: 1 })
      const n = 20
      yield* Effect.all(
        Array.from({ length: n }, () => post(`${gw.url}/v1/chat/completions`, chatBody())),
        { concurrency: 10 }
      )
      const h = (yield* gw.status).totals.hedges
      const made = h.won + h.lost + h.failed + h.cancelled
      assert.isAtLeast(made, 1)
      assert.isAtMost(made, 1 + 0.1 * n)
      // The other stalled requests were due a hedge and refused one.
      assert.isAtLeast(h.capped, n / 2 - 1 - made)
      assert.isAtLeast(h.capped, 1)
      // Upstream calls: one per request plus the hedges made.
      assert.strictEqual((yield* sim.stats).requests, n + made)
    })
  )

  it.scopedLive("a retry that stalls is hedged too (the fiber path)", () =>
    Effect.gen(function* () {
      // Every request's first attempt fails at once on `failer`, so the request goes on on the
      // balancer's fiber; its retry goes to `staller` or `steady`.
      const sim = yield* Simulator.make({
        seed: 7,
        keys: simKeys(["failer", "staller", "steady"]).map((k) =>
          k.label === "steady"
            ? k
            : {
                ...k,
                faults:
                  k.label === "failer"
                    ? { script: ["503" as const], loop: true }
                    : { script: ["stall" as const], loop: true, stallMs: STALL_MS }
              }
        ),
        latency: { kind: "fixed", ms: 5 }
      })
      const gw = yield* Gateway.make(
        yield* configFor(sim, {
          strategy: [{ name: "round-robin" }],
          hedge: { afterMs: HEDGE_MS, ratio: 1, burst: 100 }
        })
      )
      const n = 9
      const results = yield* Effect.all(
        Array.from({ length: n }, () =>
          timed(() => Effect.runPromise(post(`${gw.url}/v1/chat/completions`, chatBody())))
        ),
        { concurrency: 1 }
      )
      for (const { a, ms } of results) {
        assert.strictEqual(a.status, 200, a.text)
        assert.isBelow(ms, HEDGE_MS + 1_000)
      }
      const h = (yield* gw.status).totals.hedges
      assert.isAtLeast(h.won, 1)
      yield* quiet(sim, gw)
      assert.strictEqual((yield* sim.stats).byOutcome["200"], n)
    })
  )

  it.scopedLive(
    "the learned delay is 3 x the p95 of recent answers, at least minMs (200 ms by default)",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 7,
          keys: simKeys(["a", "b"]),
          latency: { kind: "fixed", ms: 5 }
        })
        const gw = yield* Gateway.make(yield* configFor(sim, {}))
        // Not learned before 32 answers; then recomputed every 32.
        for (let i = 0; i < 31; i++) yield* post(`${gw.url}/v1/chat/completions`, chatBody())
        assert.isNull((yield* gw.status).totals.hedgeAfterMs)
        for (let i = 0; i < 33; i++) yield* post(`${gw.url}/v1/chat/completions`, chatBody())
        // Answers in a few ms: the floor.
        assert.strictEqual((yield* gw.status).totals.hedgeAfterMs, 200)
      })
  )

  it.scopedLive("hedge: false never hedges", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(false)
      const r = yield* timed(() =>
        Promise.all(
          [0, 1].map(() =>
            fetch(`${gw.url}/v1/chat/completions`, {
              method: "POST",
              headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
              body: chatBody()
            }).then((x) => x.status)
          )
        )
      )
      assert.deepStrictEqual(r.a, [200, 200])
      // One of the two took the staller and waited out its stall.
      assert.isAtLeast(r.ms, STALL_MS - 100)
      const h = (yield* gw.status).totals.hedges
      assert.strictEqual(h.won + h.lost + h.capped + h.no_key, 0)
    })
  )
})
