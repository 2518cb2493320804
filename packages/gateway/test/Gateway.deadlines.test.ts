/**
 * Issue 13, item 6 and F7: the gateway's deadlines against an upstream that never answers and a
 * caller that never finishes its body. One deadline for the whole request (`deadlines.requestMs`)
 * across attempts, a shorter per-attempt `headersMs` with failover, and a 504 naming what was
 * tried; a stalled request body is a 408 after `deadlines.bodyMs`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import * as net from "node:net"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const event = (text: string) =>
  `data: ${JSON.stringify({ id: "gen-1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: text } }] })}\n\n`

/**
 * An upstream streaming `events` chunks `gapMs` apart and then ending the stream (`end`), or
 * going silent with the connection left open.
 */
const streamingUpstream = (events: number, gapMs: number, end: boolean) =>
  Effect.acquireRelease(
    Effect.async<http.Server>((resume) => {
      const server = http.createServer((req, res) => {
        req.resume()
        res.writeHead(200, { "content-type": "text/event-stream" })
        let sent = 0
        const next = () => {
          if (res.destroyed) return
          res.write(event(`part ${sent}`))
          if (++sent < events) return void setTimeout(next, gapMs)
          if (end) res.end("data: [DONE]\n\n")
        }
        next()
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

/** A gateway with one key in front of `server`, its body idle deadline `bodyIdleMs`. */
const gatewayIdle = (server: http.Server, bodyIdleMs: number) =>
  Effect.flatMap(
    GatewayConfig.decode({
      listen: { host: "127.0.0.1", port: 0 },
      baseUrl: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/api/v1`,
      tokens: ["GW_TOKEN"],
      keys: [{ id: "only", secretEnv: "KEY_ONLY" }],
      strategy: [{ name: "round-robin" }],
      retry: { maxAttempts: 1, baseDelayMs: 5, maxDelayMs: 20, budget: false },
      deadlines: { keyWaitMs: 500, requestMs: 10_000, bodyIdleMs, drainMs: 500 }
    }).pipe(
      Effect.withConfigProvider(
        ConfigProvider.fromMap(
          new Map([
            ["GW_TOKEN", TOKEN],
            ["KEY_ONLY", "sk-or-v1-idle0123456789abcdef0123456789abcdef0123456789abcdef0123456"]
          ])
        )
      )
    ),
    Gateway.make
  )

const streamChat = (gw: Gateway.Gateway) => post(`${gw.url}/v1/chat/completions`, chatBody({ stream: true }))

/** Keys whose every request stalls: the upstream accepts and never answers. */
const stalled = (labels: ReadonlyArray<string>) =>
  Simulator.make({
    seed: 7,
    keys: simKeys(labels).map((k) => ({ ...k, faults: { script: ["stall" as const], loop: true } }))
  })

const settled = (gw: Gateway.Gateway) =>
  Effect.gen(function* () {
    for (let i = 0; i < 300; i++) {
      const s = yield* gw.status
      if (s.inFlightRequests === 0 && s.keys.every((k) => k.inFlight === 0)) return
      yield* Effect.sleep(Duration.millis(10))
    }
    assert.fail("in-flight counts did not return to 0")
  })

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const t0 = performance.now()
    const a = yield* effect
    return [a, performance.now() - t0] as const
  })

describe("Gateway deadlines", () => {
  it.scopedLive(
    "a never-answering upstream gets a 504 at the request deadline, not attempts × headersMs",
    () =>
      Effect.gen(function* () {
        const sim = yield* stalled(["s1", "s2", "s3"])
        const gw = yield* Gateway.make(
          yield* configFor(sim, {
            retry: { maxAttempts: 10, baseDelayMs: 5, maxDelayMs: 20, budget: false },
            // 10 attempts × 400 ms would be 4 s; the whole request has 1.5 s.
            deadlines: { keyWaitMs: 2000, requestMs: 1500, headersMs: 400, drainMs: 500 }
          })
        )
        const [r, ms] = yield* timed(post(`${gw.url}/v1/chat/completions`, chatBody()))
        assert.strictEqual(r.status, 504, r.text)
        assert.isAtLeast(ms, 1400)
        // Slack for a loaded machine, still far under attempts × headersMs.
        assert.isBelow(ms, 3500)
        const error = JSON.parse(r.text).error
        assert.include(error.message, "request deadline of 1.5 s")
        const attempts: Array<{ key: string; error: string }> = error.metadata.attempts
        // Failed over on each attempt's headersMs: more than one key tried, each named with why.
        assert.isAtLeast(attempts.length, 3)
        assert.includeMembers(
          attempts.map((a) => a.key),
          ["s1", "s2", "s3"]
        )
        for (const a of attempts.slice(0, -1)) assert.strictEqual(a.error, "Timeout")
        for (const secret of sim.keys.map((k) => Redacted.value(k.secret))) assert.notInclude(r.text, secret)
        yield* settled(gw)
      })
  )

  it.scopedLive("attempts that all time out on headersMs end in a 504 naming them", () =>
    Effect.gen(function* () {
      const sim = yield* stalled(["s1", "s2"])
      const gw = yield* Gateway.make(
        yield* configFor(sim, {
          retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 20, budget: false },
          deadlines: { keyWaitMs: 2000, requestMs: 10_000, headersMs: 300, drainMs: 500 }
        })
      )
      const [r, ms] = yield* timed(post(`${gw.url}/v1/chat/completions`, chatBody()))
      assert.strictEqual(r.status, 504, r.text)
      assert.isBelow(ms, 1500)
      const error = JSON.parse(r.text).error
      assert.deepStrictEqual(
        error.metadata.attempts.map((a: { key: string; error: string }) => a.error),
        ["Timeout", "Timeout"]
      )
      yield* settled(gw)
    })
  )

  it.scopedLive("a stream silent after its first event is cut after deadlines.bodyIdleMs, in band", () =>
    Effect.gen(function* () {
      const gw = yield* gatewayIdle(yield* streamingUpstream(1, 0, false), 400)
      const [r, ms] = yield* timed(streamChat(gw))
      assert.strictEqual(r.status, 200)
      assert.include(r.text, "part 0")
      assert.include(r.text, "stream_broken")
      assert.include(r.text, "upstream timed out")
      assert.isAtLeast(ms, 350)
      assert.isBelow(ms, 3000)
      yield* settled(gw)
    })
  )

  it.scopedLive("a stream whose chunks come closer than bodyIdleMs runs past it whole", () =>
    Effect.gen(function* () {
      // 8 events 120 ms apart: about 1 s in all, against an idle deadline of 400 ms.
      const gw = yield* gatewayIdle(yield* streamingUpstream(8, 120, true), 400)
      const [r, ms] = yield* timed(streamChat(gw))
      assert.strictEqual(r.status, 200)
      assert.include(r.text, "part 7")
      assert.include(r.text, "[DONE]")
      assert.notInclude(r.text, "stream_broken")
      assert.isAtLeast(ms, 800)
      yield* settled(gw)
    })
  )

  it.scopedLive(
    "a caller that stops reading is no silent upstream: past bodyIdleMs its stream is cut in band, its key not charged",
    () =>
      Effect.gen(function* () {
        // 400 events of 32 KB at once (12.8 MB, more than the sockets buffer), read by a caller
        // that stops reading for 1.5 s, three times the idle deadline: the gateway stops reading
        // the upstream meanwhile (backpressure). The upstream was not silent: the stream is cut
        // as the caller's doing, with no verdict on the key (it was a Timeout charged to the key).
        const big = "x".repeat(32 * 1024)
        const server = yield* Effect.acquireRelease(
          Effect.async<http.Server>((resume) => {
            const s = http.createServer((req, res) => {
              req.resume()
              res.writeHead(200, { "content-type": "text/event-stream" })
              for (let i = 0; i < 400; i++) res.write(event(`${i} ${big}`))
              res.end("data: [DONE]\n\n")
            })
            s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
          }),
          (s) => Effect.sync(() => s.closeAllConnections())
        )
        const gw = yield* gatewayIdle(server, 400)
        const text = yield* Effect.promise(
          () =>
            new Promise<string>((resolve) => {
              const body = chatBody({ stream: true })
              const socket = net.connect(gw.port, "127.0.0.1")
              const chunks: Array<Buffer> = []
              let paused = false
              socket.on("data", (c: Buffer) => {
                chunks.push(c)
                if (paused) return
                paused = true
                socket.pause()
                setTimeout(() => socket.resume(), 1500)
              })
              socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")))
              socket.on("error", () => {})
              socket.write(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" +
                  `authorization: Bearer ${TOKEN}\r\ncontent-type: application/json\r\n` +
                  `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
              )
            })
        )
        assert.include(text, "HTTP/1.1 200")
        assert.include(text, "caller_too_slow")
        assert.include(text, "the caller read nothing for 400 ms")
        assert.notInclude(text, "stream_broken")
        assert.notInclude(text, "data: [DONE]")
        yield* settled(gw)
        const key = (yield* gw.status).keys[0]!
        assert.strictEqual(key.failures, 0, JSON.stringify(key.errors))
      })
  )

  it.scopedLive("a stalled request body is answered 408 after deadlines.bodyMs", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["k1"]) })
      const gw = yield* Gateway.make(
        yield* configFor(sim, { deadlines: { keyWaitMs: 2000, bodyMs: 1000, drainMs: 500 } })
      )
      const [answer, ms] = yield* timed(
        Effect.promise(
          () =>
            new Promise<string>((resolve) => {
              const socket = net.connect(gw.port, "127.0.0.1")
              const chunks: Array<Buffer> = []
              socket.on("data", (c: Buffer) => chunks.push(c))
              socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")))
              socket.on("error", () => {})
              // 100 bytes declared, 1 sent, the connection left open.
              socket.write(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" +
                  `authorization: Bearer ${TOKEN}\r\ncontent-length: 100\r\n\r\n{`
              )
            })
        )
      )
      assert.match(answer, /^HTTP\/1\.1 408 /)
      assert.isString(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error.message)
      assert.isBelow(ms, 3000)
      yield* settled(gw)
      // The gateway still serves.
      assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
    })
  )
})
