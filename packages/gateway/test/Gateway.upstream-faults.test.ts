// The gateway against a misbehaving upstream: bodies cut short or not JSON, resets, failover.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import {
  chatBody,
  MODEL,
  oneKeyConfig,
  openChat,
  post,
  setup,
  simKeys,
  TOKEN,
  waitUntil
} from "./GatewaySupport.js"

describe("Gateway with a misbehaving upstream", () => {
  type Mode = "garbage" | "truncated" | "reset"
  /** A scripted upstream on 127.0.0.1: each chat is answered by the next mode, then normally. */
  const scripted = (modes: Array<Mode>) =>
    Effect.acquireRelease(
      Effect.async<{ server: http.Server; url: string; seen: Array<string> }>((resume) => {
        const seen: Array<string> = []
        const server = http.createServer((req, res) => {
          req.resume()
          req.on("end", () => {
            seen.push(req.headers.authorization ?? "")
            const mode = modes.shift()
            if (mode === "garbage") {
              res.writeHead(200, { "content-type": "application/json" })
              return res.end("<html>upstream proxy error</html>")
            }
            if (mode === "truncated") {
              res.writeHead(200, { "content-type": "application/json", "content-length": "500" })
              res.write('{"id":"gen-1","choices":[{"mess')
              return setTimeout(() => res.socket?.destroy(), 20)
            }
            if (mode === "reset") return req.socket.destroy()
            const body = JSON.stringify({
              id: "gen-ok",
              object: "chat.completion",
              model: MODEL,
              choices: [{ index: 0, message: { role: "assistant", content: "fine" }, finish_reason: "stop" }],
              usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, cost: 0.0001 }
            })
            res.writeHead(200, { "content-type": "application/json" })
            res.end(body)
          })
        })
        server.listen(0, "127.0.0.1", () =>
          resume(
            Effect.succeed({
              server,
              url: `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v1`,
              seen
            })
          )
        )
      }),
      ({ server }) =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )

  const gatewayOn = (url: string) =>
    Effect.gen(function* () {
      const secret = Simulator.simulatedSecret(7, 0)
      const config = yield* oneKeyConfig(url, secret, {
        retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 20, budget: false },
        deadlines: { keyWaitMs: 2000, drainMs: 1000 }
      })
      return { gw: yield* Gateway.make(config), secret }
    })

  const attempt = (url: string) =>
    Effect.promise(() =>
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: chatBody()
      }).then(
        async (r) => {
          const text = await r.text().then(
            (t) => t,
            (e: unknown) => `<body failed: ${String(e)}>`
          )
          return { status: r.status, text }
        },
        (e: unknown) => ({ status: 0, text: `<request failed: ${String(e)}>` })
      )
    )

  // A JSON body cut short or not JSON at all is now read whole and failed over before anything
  // reaches the client (issue 13, item 3): see Gateway.evil-upstream.test.ts ("a bad 2xx fails over").
  it.scopedLive(
    "a body cut short counts against the key, loses nothing, and the client gets the next key's answer",
    () =>
      Effect.gen(function* () {
        const up = yield* scripted(["truncated"])
        const { gw } = yield* gatewayOn(up.url)
        const cut = yield* attempt(gw.url)
        assert.strictEqual(cut.status, 200, JSON.stringify(cut))
        assert.strictEqual(JSON.parse(cut.text).choices[0].message.content, "fine")
        yield* waitUntil(
          Effect.map(gw.status, (s) => s.keys[0]!.inFlight === 0 && s.inFlightRequests === 0),
          "the key to be released"
        )
        const status = yield* gw.status
        assert.strictEqual(status.keys[0]!.failures, 1)
        assert.strictEqual(status.keys[0]!.errors.Transport, 1)
        // The process is up and the key serves the next request.
        const next = yield* attempt(gw.url)
        assert.strictEqual(next.status, 200)
        assert.strictEqual(JSON.parse(next.text).choices[0].message.content, "fine")
      })
  )

  it.scopedLive(
    "connections reset before any byte: failover, then a clear 502 in JSON naming the failure",
    () =>
      Effect.gen(function* () {
        const up = yield* scripted(["reset", "reset"])
        const { gw, secret } = yield* gatewayOn(up.url)
        const r = yield* attempt(gw.url)
        assert.strictEqual(r.status, 502)
        const error = JSON.parse(r.text).error
        assert.strictEqual(error.code, 502)
        assert.match(error.message, /upstream connection failed/)
        assert.strictEqual(error.metadata.error_type, "Transport")
        assert.notInclude(r.text, secret)
        assert.strictEqual(up.seen.length, 2)
        assert.strictEqual((yield* attempt(gw.url)).status, 200)
      })
  )

  it.scopedLive(
    "a 200 that is not JSON counts against the key and is failed over; the gateway keeps serving",
    () =>
      Effect.gen(function* () {
        const up = yield* scripted(["garbage"])
        const { gw } = yield* gatewayOn(up.url)
        const r = yield* attempt(gw.url)
        // Nothing of it reached the client: the next attempt's answer did.
        assert.strictEqual(r.status, 200)
        assert.strictEqual(JSON.parse(r.text).choices[0].message.content, "fine")
        assert.strictEqual((yield* attempt(gw.url)).status, 200)
        const status = yield* gw.status
        assert.strictEqual(status.inFlightRequests, 0)
        // It counts against the key (as InvalidResponse, the client's verdict too: `Protocol`);
        // the well-formed answers after it do not.
        assert.strictEqual(status.keys[0]!.errors.InvalidResponse, 1)
        assert.strictEqual(status.keys[0]!.successes, 2)
      })
  )
})

// Most requests are forwarded with no fiber: the stack decides at once (round robin; random too,
// from a PRNG seeded by `Random`). A stack that must wait for something first runs the request on a
// fiber: credit-aware whose cached credit is already stale (a 1 ms TTL) waits for `GET /key` on
// every request. All must behave the same.
describe.each([
  { path: "fast path, round robin", strategy: [{ name: "round-robin" }] },
  { path: "fast path, random", strategy: [{ name: "random" }] },
  { path: "fiber path", strategy: [{ name: "credit-aware", ttlMs: 1 }] }
])("Gateway forwarding, $path", ({ strategy }) => {
  const extra = { strategy }

  it.scopedLive("failover around a failing key is invisible; every key is released", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(
        ["flaky", "good"],
        {
          keys: simKeys(["flaky", "good"]).map((k) =>
            k.label === "flaky" ? { ...k, faults: { script: ["500" as const], loop: true } } : k
          )
        },
        extra
      )
      for (let i = 0; i < 6; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ stream: i % 2 === 1 }))
        assert.strictEqual(r.status, 200)
      }
      assert.strictEqual((yield* sim.stats).keys["good"]!.byOutcome["200"], 6)
      yield* waitUntil(
        Effect.map(gw.status, (s) => s.inFlightRequests === 0 && s.keys.every((k) => k.inFlight === 0)),
        "every key to be released"
      )
      const status = yield* gw.status
      assert.strictEqual(status.totals.successes, 6)
      assert.strictEqual(status.totals.failures, (yield* sim.stats).keys["flaky"]!.byOutcome["500"] ?? 0)
    })
  )

  it.scopedLive("every attempt failing: the client gets upstream's own status and body", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(
        ["down-1", "down-2"],
        {
          keys: simKeys(["down-1", "down-2"]).map((k) => ({
            ...k,
            faults: { script: ["500" as const], loop: true }
          }))
        },
        extra
      )
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      assert.strictEqual(r.status, 500)
      assert.include(r.text, '"error"')
      const status = yield* gw.status
      assert.strictEqual(status.totals.failures, 4)
      assert.isTrue(status.keys.every((k) => k.inFlight === 0))
    })
  )

  it.scopedLive("a client leaving while a retry is in flight cancels it and releases both keys", () =>
    Effect.gen(function* () {
      // Round robin starts on `bad` (500), then retries on `stall`; random may start on either.
      const { sim, gw } = yield* setup(
        ["bad", "stall"],
        {
          keys: simKeys(["bad", "stall"]).map((k) => ({
            ...k,
            faults: { script: [k.label === "bad" ? ("500" as const) : ("stall" as const)], loop: true }
          }))
        },
        extra
      )
      const req = openChat(gw)
      yield* waitUntil(
        Effect.map(sim.stats, (s) => s.inFlight === 1),
        "a request to stall upstream"
      )
      assert.strictEqual((yield* gw.status).keys.find((k) => k.id === "stall")!.inFlight, 1)
      req.destroy()
      yield* waitUntil(
        Effect.map(sim.stats, (s) => s.inFlight === 0),
        "upstream to see the cancel"
      )
      yield* waitUntil(
        Effect.map(gw.status, (s) => s.inFlightRequests === 0 && s.keys.every((k) => k.inFlight === 0)),
        "both keys to be released"
      )
      // The stalled attempt was cancelled, not failed: a client leaving is not the key's fault.
      assert.strictEqual((yield* gw.status).keys.find((k) => k.id === "stall")!.failures, 0)
    })
  )
})
