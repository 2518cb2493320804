import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import * as net from "node:net"
import * as v8 from "node:v8"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

// Issue 14, Overload: what a burst leaves behind, and a burst queued longer than the retry
// budget's window.

/** Live objects of each class, counted after a full GC (`v8.queryObjects` collects first). */
const census = (classes: Record<string, abstract new (...args: Array<never>) => unknown>) =>
  Object.fromEntries(
    Object.entries(classes).map(([name, c]) => [
      name,
      v8.queryObjects(c as never, { format: "count" }) as number
    ])
  )

/** `n` requests at once over their own connections; resolves with each status. */
const burst = (url: string, n: number, extra: Record<string, unknown> = {}): Promise<Array<number>> => {
  const agent = new http.Agent({ keepAlive: false, maxSockets: n })
  const target = new URL(`${url}/v1/chat/completions`)
  const body = chatBody({ max_tokens: 8, ...extra })
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<number>((resolve) => {
          const req = http.request(
            {
              agent,
              host: target.hostname,
              port: target.port,
              path: target.pathname,
              method: "POST",
              headers: {
                authorization: `Bearer ${TOKEN}`,
                "content-type": "application/json",
                "content-length": Buffer.byteLength(body)
              }
            },
            (res) => {
              res.resume()
              res.on("end", () => resolve(res.statusCode ?? 0))
            }
          )
          req.on("error", () => resolve(-1))
          req.end(body)
        })
    )
  ).finally(() => agent.destroy())
}

describe("Gateway under a burst (issue 14, Overload)", () => {
  it.live(
    "after 200 requests at once, no request's objects are left: the same census as idle",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 5,
          keys: simKeys(["a", "b", "flaky"]).map((k) =>
            k.label === "flaky" ? { ...k, faults: { rates: { "500": 0.2, "503": 0.1, reset: 0.05 } } } : k
          ),
          latency: { kind: "uniform", min: 5, max: 40 }
        })
        const gw = yield* Gateway.make(
          yield* configFor(sim, {
            strategy: [{ name: "health-aware", failureThreshold: 3 }, { name: "round-robin" }],
            retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 50 },
            deadlines: { keyWaitMs: 10_000, requestMs: 30_000, drainMs: 2000 }
          })
        )
        const classes = {
          ServerResponse: http.ServerResponse,
          IncomingMessage: http.IncomingMessage,
          ClientRequest: http.ClientRequest,
          // Callers' connections (the upstream pool keeps its own: at most its cap).
          Socket: net.Socket
        }
        // Warm: one request, so what is made once per process (an upstream socket, parsers) is idle too.
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
        const idle = census(classes)
        const statuses = yield* Effect.promise(() => burst(gw.url, 200))
        assert.strictEqual(statuses.filter((s) => s === 200).length, 200)
        assert.strictEqual(yield* gw.inFlight, 0)
        // The callers' connections are closed on both sides before counting.
        yield* Effect.sleep("200 millis")
        const after = census(classes)
        // Requests, answers and upstream calls: none kept.
        assert.isAtMost(after.ServerResponse!, idle.ServerResponse!)
        assert.isAtMost(after.IncomingMessage!, idle.IncomingMessage!)
        assert.isAtMost(after.ClientRequest!, idle.ClientRequest!)
        // Sockets: the idle ones plus the upstream pool's free sockets (both ends, in this process).
        assert.isAtMost(after.Socket!, idle.Socket! + 2 * 256)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a burst queued longer than the retry budget's window still fails over (the window spans a request's life)",
    () =>
      Effect.gen(function* () {
        // Every answer takes 1.5 s; `bad` always answers 500. 60 requests at once: 30 meet `bad` at
        // 1.5 s, when a 1 s budget window had already forgotten the 60 requests: 1 retry allowed
        // (the floor), 29 callers got the 500. The window now spans the request deadline (10 s).
        const sim = yield* Simulator.make({
          seed: 6,
          keys: simKeys(["bad", "good"]).map((k) =>
            k.label === "bad" ? { ...k, faults: { rates: { "500": 1 } } } : k
          ),
          latency: { kind: "fixed", ms: 1500 }
        })
        const gw = yield* Gateway.make(
          yield* configFor(sim, {
            strategy: [{ name: "round-robin" }],
            retry: {
              maxAttempts: 4,
              baseDelayMs: 5,
              maxDelayMs: 50,
              budget: { ratio: 0.5, minPerSecond: 1, windowMs: 1000 }
            },
            deadlines: { keyWaitMs: 5000, requestMs: 10_000, drainMs: 2000 },
            hedge: false
          })
        )
        const answers = yield* Effect.all(
          Array.from({ length: 60 }, () => post(`${gw.url}/v1/chat/completions`, chatBody())),
          { concurrency: "unbounded" }
        )
        const failed = answers.filter((a) => a.status !== 200).map((a) => a.status)
        assert.deepStrictEqual(failed, [])
        const stats = yield* sim.stats
        const bad = Object.values(stats.keys).find((k) => k.label === "bad")
        assert.strictEqual(bad?.byOutcome["500"], 30)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "an attempt queued for one of the pool's sockets is not timed out for the wait (the key is not charged)",
    () =>
      Effect.gen(function* () {
        // 256 slow streams hold every socket of the upstream pool for 12 s; one more request waits
        // for a socket. Its headers deadline (2 s) counted from the start timed it out while queued,
        // a Timeout charged to a key it was never sent to (and again on each retry); it now starts
        // at the socket, and the request is served once a stream ends.
        const sim = yield* Simulator.make({
          seed: 8,
          keys: simKeys(["a", "b"]),
          stream: { keepAlives: 0, chunks: 4, chunkIntervalMs: 3000 }
        })
        const gw = yield* Gateway.make(
          yield* configFor(sim, {
            strategy: [{ name: "round-robin" }],
            deadlines: { keyWaitMs: 5000, requestMs: 30_000, headersMs: 2000, drainMs: 2000 },
            hedge: false
          })
        )
        const streams = burst(gw.url, 256, { stream: true })
        // Every stream has its upstream socket (the simulator has seen all 256).
        const seen = Effect.map(sim.stats, (s) => Object.values(s.keys).reduce((n, k) => n + k.requests, 0))
        while ((yield* seen) < 256) yield* Effect.sleep("50 millis")
        const answer = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
        assert.strictEqual(answer.status, 200)
        assert.deepStrictEqual(
          (yield* Effect.promise(() => streams)).filter((s) => s !== 200),
          []
        )
        const keys = (yield* gw.status).keys
        assert.deepStrictEqual(
          keys.map((k) => [k.id, k.errors]),
          [
            ["a", {}],
            ["b", {}]
          ]
        )
      }).pipe(Effect.scoped),
    120_000
  )
})
