/**
 * One upstream call on undici's pool (upstreamCall.ts, `startUpstream`): a call given up on or failed
 * while it waits for a connection is never sent, reports once, and leaves the connection it is
 * then handed open for the next call; a connection that never completes fails the attempt at its
 * headers deadline. The pool here has one connection, so a second call waits in its queue.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import * as net from "node:net"
import * as Undici from "undici"
import type { Answer } from "../src/internal/answer.js"
import type { Deadline } from "../src/internal/deadlines.js"
import type { EngineState } from "../src/internal/state.js"
import { type RequestContext, upstreamFor } from "../src/internal/upstream.js"
import { startUpstream } from "../src/internal/upstreamCall.js"

const COMPLETION = JSON.stringify({
  id: "gen-1",
  object: "chat.completion",
  model: "openai/gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, cost: 0.000001 }
})

interface Upstream {
  readonly url: string
  /** Connections accepted, and the request ids received, in order. */
  readonly connections: () => number
  readonly received: Array<string>
}

/**
 * An upstream answering each request after `delayMs`: a 401 for the key `sk-or-v1-bad…`, else a
 * completion; a stream at once to a request id `stream…`. Idle connections are closed after
 * `keepAliveMs` (0: never).
 */
const upstream = (delayMs: number, keepAliveMs = 5_000) =>
  Effect.acquireRelease(
    Effect.async<Upstream & { server: http.Server }>((resume) => {
      let connections = 0
      const received: Array<string> = []
      const server = http.createServer((req, res) => {
        const id = String(req.headers["x-request-id"])
        received.push(id)
        req.resume()
        // A stream ("stream-…"): its first event, then nothing more.
        if (id.startsWith("stream")) {
          res.writeHead(200, { "content-type": "text/event-stream" })
          return void res.write(`data: ${COMPLETION}\n\n`)
        }
        setTimeout(() => {
          const bad = String(req.headers.authorization).startsWith("Bearer sk-or-v1-bad")
          res.writeHead(bad ? 401 : 200, { "content-type": "application/json" })
          res.end(bad ? JSON.stringify({ error: { code: 401, message: "User not found." } }) : COMPLETION)
        }, delayMs)
      })
      // Node's server announces `Keep-Alive: timeout=⌊keepAliveMs / 1000⌋` (none for 0).
      server.keepAliveTimeout = keepAliveMs
      server.on("connection", () => connections++)
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        resume(
          Effect.succeed({
            server,
            url: `http://127.0.0.1:${port}/api/v1`,
            connections: () => connections,
            received
          })
        )
      })
    }),
    ({ server }) => Effect.sync(() => server.closeAllConnections())
  )

/** Just what `startUpstream` reads of an engine, its pools destroyed at the end. */
const engineOf = (baseUrl: string, headersMs = 15_000) => {
  const engine = {
    config: { baseUrl, deadlines: { headersMs, bodyIdleMs: 300_000 } },
    built: { clock: { unsafeCurrentTimeMillis: () => Date.now() } },
    upstreams: new Map()
  } as unknown as EngineState
  return Effect.as(
    Effect.addFinalizer(() =>
      Effect.promise(async () => {
        for (const u of engine.upstreams.values()) await u.dispatcher.destroy().catch(() => undefined)
      })
    ),
    engine
  )
}

/** {@link engineOf} whose pool for `baseUrl` has one connection. */
const engineFor = (baseUrl: string) =>
  Effect.map(engineOf(baseUrl), (engine) => {
    const up = upstreamFor(engine, baseUrl)
    void up.dispatcher.destroy()
    const dispatcher = new Undici.Pool(new URL(baseUrl).origin, {
      connections: 1,
      pipelining: 1,
      headersTimeout: 0,
      bodyTimeout: 0
    })
    engine.upstreams.set(baseUrl, { ...up, dispatcher })
    return engine
  })

const keyOf = (id: string, secret: string): Key.Key => ({
  id,
  secret: Redacted.make(secret),
  account: undefined,
  weight: 1,
  maxConcurrency: undefined,
  models: undefined,
  baseUrl: undefined
})
const GOOD = keyOf("good", "sk-or-v1-good0123456789")
const BAD = keyOf("bad", "sk-or-v1-bad0123456789")

const ctxFor = (id: string, deadlineMs = 60_000): RequestContext => ({
  method: "POST",
  suffix: "/chat/completions",
  body: Buffer.from(JSON.stringify({ model: "openai/gpt-4o-mini", messages: [] })),
  model: "openai/gpt-4o-mini",
  accept: undefined,
  referer: undefined,
  title: undefined,
  upstream: undefined,
  response: undefined,
  failed: undefined,
  requestId: id,
  traceparent: undefined,
  tracestate: undefined,
  log: undefined,
  deadlineAt: Date.now() + deadlineMs,
  attempt: undefined,
  tried: []
})

/** Starts a call; its outcomes (answer status or error tag), every time `done` is called. */
const call = (engine: EngineState, ctx: RequestContext, key: Key.Key) => {
  const outcomes: Array<string> = []
  startUpstream(engine, ctx, key, (result) => {
    outcomes.push(result._tag === "Answer" ? String(result.status) : result.error._tag)
    // An answer is read whole here (JSON): nothing more to pipe.
  })
  return outcomes
}

const waitFor = (check: () => boolean, ms = 3_000) =>
  Effect.gen(function* () {
    for (let waited = 0; !check() && waited < ms; waited += 10) yield* Effect.sleep("10 millis")
  })

describe("an upstream call waiting for a connection", () => {
  it.scopedLive(
    "given up on (a hedge lost, the client left): never sent, and its connection stays open",
    () =>
      Effect.gen(function* () {
        const up = yield* upstream(150)
        const engine = yield* engineFor(up.url)
        const a = call(engine, ctxFor("a"), GOOD)
        const ctxB = ctxFor("b")
        const b = call(engine, ctxB, GOOD)
        yield* Effect.sleep("20 millis")
        ctxB.upstream!.destroy()
        yield* waitFor(() => a.length > 0)
        // B is handed the freed connection now, and dropped.
        yield* Effect.sleep("30 millis")
        const c = call(engine, ctxFor("c"), GOOD)
        yield* waitFor(() => c.length > 0)
        assert.deepStrictEqual([a, b, c], [["200"], [], ["200"]])
        assert.deepStrictEqual(up.received, ["a", "c"])
        assert.strictEqual(up.connections(), 1, "the connection B was handed served C")
      })
  )

  it.scopedLive("failed by its key's 401: reports once, never sent, and its connection stays open", () =>
    Effect.gen(function* () {
      const up = yield* upstream(100)
      const engine = yield* engineFor(up.url)
      const a = call(engine, ctxFor("a"), BAD)
      const b = call(engine, ctxFor("b"), BAD)
      yield* waitFor(() => a.length > 0 && b.length > 0)
      yield* Effect.sleep("30 millis")
      const c = call(engine, ctxFor("c"), GOOD)
      yield* waitFor(() => c.length > 0)
      assert.deepStrictEqual([a, b, c], [["Unauthorized"], ["Unauthorized"], ["200"]])
      assert.deepStrictEqual(up.received, ["a", "c"])
      assert.strictEqual(up.connections(), 1, "the connection B was handed served C")
    })
  )

  it.scopedLive("failed by the request's deadline: reports once, and is never sent afterwards", () =>
    Effect.gen(function* () {
      const up = yield* upstream(250)
      const engine = yield* engineFor(up.url)
      const a = call(engine, ctxFor("a"), GOOD)
      // 100 ms left, under `headersMs`: this attempt ends with the request.
      const b = call(engine, ctxFor("b", 100), GOOD)
      yield* waitFor(() => a.length > 0)
      // Sent when A freed the connection, B's answer would be in by now.
      yield* Effect.sleep("350 millis")
      assert.deepStrictEqual([a, b], [["200"], ["Timeout"]])
      assert.deepStrictEqual(up.received, ["a"], "B was not sent once A freed the connection")
    })
  )
})

describe("an upstream connection that never completes", () => {
  it.scopedLive("a TLS handshake left unanswered fails the attempt at `headersMs`", () =>
    Effect.gen(function* () {
      // Accepts, and never answers the TLS client's hello.
      const silent = yield* Effect.acquireRelease(
        Effect.async<{ server: net.Server; sockets: Set<net.Socket> }>((resume) => {
          const sockets = new Set<net.Socket>()
          const server = net.createServer((s) => {
            sockets.add(s)
            s.on("error", () => undefined)
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
        }),
        ({ server, sockets }) =>
          Effect.sync(() => {
            for (const s of sockets) s.destroy()
            server.close()
          })
      )
      const { port } = silent.server.address() as net.AddressInfo
      const engine = yield* engineOf(`https://127.0.0.1:${port}/api/v1`, 300)
      const t0 = Date.now()
      const a = call(engine, ctxFor("a"), GOOD)
      yield* waitFor(() => a.length > 0, 3_000)
      assert.deepStrictEqual(a, ["Timeout"])
      assert.isBelow(
        Date.now() - t0,
        1_500,
        "failed at its headers deadline, not undici's 10 s connect timeout"
      )
    })
  )
})

describe("an answer given up on by its reader", () => {
  it.scopedLive(
    "a stream destroyed before it is piped (a hedge answered first) leaves no deadline armed",
    () =>
      Effect.gen(function* () {
        const up = yield* upstream(0)
        const engine = yield* engineFor(up.url)
        const ctx = ctxFor("stream-1")
        let answer: Answer | undefined
        startUpstream(engine, ctx, GOOD, (result) => {
          if (result._tag === "Answer") answer = result
        })
        yield* waitFor(() => answer !== undefined)
        assert.isTrue(answer!.stream)
        // As the fiber path drops an answer that lost to a hedge (forward.ts, `pipeOnFiber`).
        answer!.response.destroy()
        // Armed, its body deadline held the call (and the request's body) for `bodyIdleMs`.
        assert.isUndefined((ctx.upstream as unknown as Deadline).deadlineList)
      })
  )
})

describe("keep-alive to the upstream, as Node's agent kept it", () => {
  it.scopedLive("a `Keep-Alive: timeout=2` hint: calls 100 ms apart share one connection", () =>
    Effect.gen(function* () {
      const up = yield* upstream(0, 2_500)
      const engine = yield* engineOf(up.url)
      for (let i = 0; i < 3; i++) {
        const done = call(engine, ctxFor(`k${i}`), GOOD)
        yield* waitFor(() => done.length > 0)
        assert.deepStrictEqual(done, ["200"])
        yield* Effect.sleep("100 millis")
      }
      // undici's own margin under a hint is 2 s: it closed the connection after every answer.
      assert.strictEqual(up.connections(), 1)
    })
  )

  it.scopedLive(
    "no hint: calls 4.5 s apart share one connection",
    () =>
      Effect.gen(function* () {
        const up = yield* upstream(0, 0)
        const engine = yield* engineOf(up.url)
        for (let i = 0; i < 2; i++) {
          if (i > 0) yield* Effect.sleep("4500 millis")
          const done = call(engine, ctxFor(`k${i}`), GOOD)
          yield* waitFor(() => done.length > 0)
          assert.deepStrictEqual(done, ["200"])
        }
        // undici's default closes a connection idle for 4 s.
        assert.strictEqual(up.connections(), 1)
      }),
    { timeout: 10_000 }
  )
})
