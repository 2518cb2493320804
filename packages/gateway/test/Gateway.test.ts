import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import { OpenRouter } from "@openrouter/sdk"
import * as http from "node:http"
import OpenAI from "openai"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const MODEL = "openai/gpt-4o-mini"
const messages = [{ role: "user" as const, content: "hello" }]

const setup = (
  labels: ReadonlyArray<string>,
  sim: Partial<Simulator.Config> = {},
  extra: Record<string, unknown> = {}
) =>
  Effect.gen(function* () {
    const s = yield* Simulator.make({ seed: 7, keys: simKeys(labels), ...sim })
    const gw = yield* Gateway.make(yield* configFor(s, extra))
    return { sim: s, gw }
  })

const secretsOf = (sim: Simulator.Handle) => sim.keys.map((k) => Redacted.value(k.secret))

const waitUntil = (f: Effect.Effect<boolean>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (yield* f) return
      yield* Effect.sleep(Duration.millis(10))
    }
    assert.fail(`timed out waiting for ${what}`)
  })

/** A chat request sent on a raw connection, so that the test can cut it off (`req.destroy()`). */
const openChat = (gw: Gateway.Gateway) => {
  const req = http.request(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }
  })
  req.on("error", () => undefined)
  req.end(chatBody())
  return req
}

/** After a client left: upstream saw the cancel, the key is free again, and it serves the next request. */
const cancelledAndReleased = (sim: Simulator.Handle, gw: Gateway.Gateway) =>
  Effect.gen(function* () {
    yield* waitUntil(
      Effect.map(sim.stats, (s) => s.inFlight === 0),
      "upstream to see the cancel"
    )
    yield* waitUntil(
      Effect.map(gw.status, (s) => s.keys[0]!.inFlight === 0 && s.inFlightRequests === 0),
      "the key to be released"
    )
    // Released with no verdict: a client leaving is not the key's fault.
    assert.strictEqual((yield* gw.status).keys[0]!.failures, 0)
    assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
  })

describe("Gateway with the official clients", () => {
  it.scopedLive("openai: chat completion and stream, failover around a revoked key is invisible", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["good-1", "revoked", "good-2"], {
        keys: simKeys(["good-1", "revoked", "good-2"]).map((k) =>
          k.label === "revoked" ? { ...k, revoked: true } : k
        )
      })
      const client = new OpenAI({ apiKey: TOKEN, baseURL: `${gw.url}/v1`, maxRetries: 0 })
      for (let i = 0; i < 6; i++) {
        const c = yield* Effect.promise(() => client.chat.completions.create({ model: MODEL, messages }))
        assert.strictEqual(c.object, "chat.completion")
        assert.isTrue((c.choices[0]?.message.content ?? "").length > 0)
      }
      const stream = yield* Effect.promise(() =>
        client.chat.completions.create({ model: MODEL, messages, stream: true })
      )
      let text = ""
      yield* Effect.promise(async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ""
      })
      assert.isTrue(text.length > 0)
      const stats = yield* sim.stats
      // The revoked key was tried and answered 401, but every client call succeeded.
      assert.isTrue((stats.keys["revoked"]!.byOutcome["401"] ?? 0) >= 1)
      assert.strictEqual(
        (stats.keys["good-1"]!.byOutcome["200"] ?? 0) + (stats.keys["good-2"]!.byOutcome["200"] ?? 0),
        7
      )
      const status = yield* gw.status
      const revoked = status.keys.find((k) => k.id === "revoked")!
      assert.isTrue((revoked.errors["Unauthorized"] ?? 0) >= 1)
    })
  )

  it.scopedLive("@openrouter/sdk: a chat completion through the gateway's /api/v1, failover invisible", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1", "k2"], {
        keys: simKeys(["k1", "k2"]).map((k) => (k.label === "k1" ? { ...k, revoked: true } : k))
      })
      const client = new OpenRouter({ apiKey: TOKEN, serverURL: `${gw.url}/api/v1` })
      for (let i = 0; i < 3; i++) {
        const result = yield* Effect.promise(() =>
          client.chat.send({ chatRequest: { model: MODEL, messages } })
        )
        if (Symbol.asyncIterator in result) return assert.fail("expected a JSON answer")
        const content = result.choices[0]?.message.content
        assert.isTrue(typeof content === "string" && content.length > 0)
      }
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["k2"]!.byOutcome["200"], 3)
      assert.isTrue((stats.keys["k1"]!.byOutcome["401"] ?? 0) >= 1)
    })
  )

  it.scopedLive("@openrouter/sdk: a stream through the gateway's /api/v1", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1", "k2"], {
        keys: simKeys(["k1", "k2"]).map((k) => (k.label === "k1" ? { ...k, revoked: true } : k))
      })
      const client = new OpenRouter({ apiKey: TOKEN, serverURL: `${gw.url}/api/v1` })
      let text = ""
      for (let i = 0; i < 2; i++) {
        const stream = yield* Effect.promise(() =>
          client.chat.send({ chatRequest: { model: MODEL, messages, stream: true } })
        )
        // The SDK types both overloads' answers as the union of a result and a stream.
        if (!(Symbol.asyncIterator in stream)) return assert.fail("expected a stream")
        yield* Effect.promise(async () => {
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ""
        })
      }
      assert.isTrue(text.length > 0)
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["k2"]!.byOutcome["200"], 2)
      assert.isTrue((stats.keys["k1"]!.byOutcome["401"] ?? 0) >= 1)
    })
  )
})

describe("Gateway protocol", () => {
  it.scopedLive("SSE bytes pass through unchanged, keep-alive comments included", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1"], { stream: { keepAlives: 2, chunks: 3 } })
      const direct = yield* Effect.promise(() =>
        fetch(`${sim.baseUrl}/chat/completions`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${Redacted.value(sim.keys[0]!.secret)}`,
            "content-type": "application/json"
          },
          body: chatBody({ stream: true })
        }).then((r) => r.text())
      )
      const via = yield* post(`${gw.url}/api/v1/chat/completions`, chatBody({ stream: true }))
      assert.strictEqual(via.status, 200)
      assert.match(via.headers.get("content-type") ?? "", /text\/event-stream/)
      assert.include(via.text, ": OPENROUTER PROCESSING")
      assert.include(via.text, "data: [DONE]")
      // Same shape as a direct answer: same number of lines of each kind.
      const kinds = (t: string) =>
        t.split("\n").map((l) => (l.startsWith(":") ? ":" : l.startsWith("data:") ? "d" : l))
      assert.deepStrictEqual(
        kinds(via.text).filter((k) => k === ":").length,
        kinds(direct).filter((k) => k === ":").length
      )
      assert.deepStrictEqual(
        kinds(via.text).filter((k) => k === "d").length,
        kinds(direct).filter((k) => k === "d").length
      )
    })
  )

  it.scopedLive("a stream reaches the client while upstream is still sending (no buffering)", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1"], { stream: { keepAlives: 1, chunks: 6, chunkIntervalMs: 150 } })
      const res = yield* Effect.promise(() =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: chatBody({ stream: true })
        })
      )
      assert.strictEqual(res.status, 200)
      const reader = res.body!.getReader()
      const first = yield* Effect.promise(() => reader.read())
      assert.isFalse(first.done)
      // The first bytes are here and the upstream answer is still being written.
      assert.strictEqual((yield* sim.stats).inFlight, 1)
      let rest = new TextDecoder().decode(first.value)
      for (;;) {
        const r = yield* Effect.promise(() => reader.read())
        if (r.done) break
        rest += new TextDecoder().decode(r.value)
      }
      assert.include(rest, "data: [DONE]")
    })
  )

  it.scopedLive("a stream that fails after its first byte is not replayed on another key", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["mid-a", "mid-b"], {
        keys: simKeys(["mid-a", "mid-b"]).map((k) => ({
          ...k,
          faults: { script: ["midstream" as const], loop: true }
        })),
        stream: { keepAlives: 1, chunks: 4, chunkIntervalMs: 2 }
      })
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ stream: true }))
      // The head went out with the first byte: the client gets the 200 and the in-band error.
      assert.strictEqual(r.status, 200)
      assert.include(r.text, '"finish_reason":"error"')
      assert.strictEqual((yield* sim.stats).requests, 1)
      yield* waitUntil(
        Effect.map(gw.status, (s) => s.inFlightRequests === 0),
        "the request to finish"
      )
      const status = yield* gw.status
      assert.strictEqual(status.totals.failures, 1)
      assert.strictEqual(status.totals.retries, 0)
    })
  )

  it.scopedLive("GET /v1/models is passed through", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(["k1"])
      const r = yield* Effect.promise(() =>
        fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${TOKEN}` } }).then(async (r) => ({
          status: r.status,
          json: (await r.json()) as { data: Array<{ id: string }> }
        }))
      )
      assert.strictEqual(r.status, 200)
      assert.isTrue(r.json.data.some((m) => m.id === MODEL))
    })
  )

  it.scopedLive("tokens: missing or wrong is a 401 in OpenAI's error shape; nothing reaches upstream", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1"])
      const none = yield* Effect.promise(() =>
        fetch(`${gw.url}/v1/chat/completions`, { method: "POST", body: chatBody() }).then(async (r) => ({
          status: r.status,
          json: (await r.json()) as { error: { code: string; type: string } }
        }))
      )
      assert.strictEqual(none.status, 401)
      assert.strictEqual(none.json.error.code, "invalid_api_key")
      assert.strictEqual(none.json.error.type, "invalid_request_error")
      const wrong = yield* post(`${gw.url}/v1/chat/completions`, chatBody(), {
        authorization: `Bearer ${TOKEN}x`
      })
      assert.strictEqual(wrong.status, 401)
      // An upstream key is not a gateway token.
      const upstreamKey = yield* post(`${gw.url}/v1/chat/completions`, chatBody(), {
        authorization: `Bearer ${Redacted.value(sim.keys[0]!.secret)}`
      })
      assert.strictEqual(upstreamKey.status, 401)
      assert.strictEqual((yield* sim.stats).requests, 0)
      const ok = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      assert.strictEqual(ok.status, 200)
    })
  )

  it.scopedLive("tokens on one keep-alive connection: each request is checked, and a reload re-checks", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1"])
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      const send = (token: string) =>
        Effect.async<{ status: number; reused: boolean }>((resume) => {
          const req = http.request(`${gw.url}/v1/chat/completions`, {
            agent,
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }
          })
          req.on("response", (res) => {
            res.resume()
            res.on("end", () =>
              resume(Effect.succeed({ status: res.statusCode ?? 0, reused: req.reusedSocket }))
            )
          })
          req.on("error", (e) => resume(Effect.die(e)))
          req.end(chatBody())
        })
      assert.strictEqual((yield* send(TOKEN)).status, 200)
      // The same connection, another header: not taken on trust from the last request.
      const wrong = yield* send(`${TOKEN}x`)
      assert.deepStrictEqual(wrong, { status: 401, reused: true })
      assert.deepStrictEqual(yield* send(TOKEN), { status: 200, reused: true })
      // A reload that replaces the token: the connection's earlier acceptance no longer counts.
      const env = new Map([["GW_TOKEN_2", "gw-test-token-second-0123"]])
      for (const k of sim.keys) env.set(`KEY_${k.label.toUpperCase()}`, Redacted.value(k.secret))
      const next = yield* GatewayConfig.decode({
        listen: { host: "127.0.0.1", port: 0 },
        baseUrl: sim.baseUrl,
        tokens: ["GW_TOKEN_2"],
        keys: [{ id: "k1", secretEnv: "KEY_K1" }]
      }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))
      yield* gw.reload(next)
      assert.deepStrictEqual(yield* send(TOKEN), { status: 401, reused: true })
      assert.deepStrictEqual(yield* send("gw-test-token-second-0123"), { status: 200, reused: true })
    })
  )

  it.scopedLive("413 over the body limit, 400 naming the JSON problem", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1"], {}, { bodyLimitBytes: 1000 })
      const big = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ pad: "x".repeat(5000) }))
      assert.strictEqual(big.status, 413)
      assert.include(JSON.parse(big.text).error.message, "1000 bytes")
      const bad = yield* post(`${gw.url}/v1/chat/completions`, '{"model": "a", "messages": [')
      assert.strictEqual(bad.status, 400)
      const error = JSON.parse(bad.text).error
      assert.strictEqual(error.code, "invalid_json")
      assert.match(error.message, /^invalid JSON in request body: /)
      for (const body of ["[1,2]", "[]", '"x"', "null", "42"]) {
        const notObject = yield* post(`${gw.url}/v1/chat/completions`, body)
        assert.strictEqual(notObject.status, 400, body)
        assert.strictEqual(JSON.parse(notObject.text).error.message, "request body must be a JSON object")
      }
      const noModel = yield* post(`${gw.url}/v1/chat/completions`, '{"messages": []}')
      assert.strictEqual(noModel.status, 400)
      assert.include(JSON.parse(noModel.text).error.message, '"model"')
      assert.strictEqual((yield* sim.stats).requests, 0)
    })
  )

  it.scopedLive(
    "when every attempt fails the client gets OpenRouter's status and body, with Retry-After",
    () =>
      Effect.gen(function* () {
        const rateLimited = { script: ["429" as const], loop: true }
        const { gw } = yield* setup(["k1", "k2"], {
          keys: simKeys(["k1", "k2"]).map((k) => ({ ...k, faults: rateLimited })),
          retryAfterSeconds: 30
        })
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
        assert.strictEqual(r.status, 429)
        const body = JSON.parse(r.text)
        assert.strictEqual(body.error.code, 429)
        const retryAfter = Number(r.headers.get("retry-after"))
        assert.isTrue(retryAfter >= 1 && retryAfter <= 30, `retry-after ${retryAfter}`)
      })
  )

  it.scopedLive("every key ejected: a 503 in JSON with Retry-After, no upstream call", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(
        ["cool-a"],
        {
          keys: simKeys(["cool-a"]).map((k) => ({ ...k, faults: { script: ["500" as const], loop: true } }))
        },
        {
          strategy: [
            { name: "health-aware", failureThreshold: 1, baseCooldownMs: 30_000, panicThreshold: 1 },
            { name: "round-robin" }
          ],
          deadlines: { keyWaitMs: 200, drainMs: 1000 }
        }
      )
      const first = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      assert.strictEqual(first.status, 500)
      const calls = (yield* sim.stats).requests
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      assert.strictEqual(r.status, 503, r.text)
      const body = JSON.parse(r.text)
      assert.strictEqual(body.error.code, 503)
      assert.isString(body.error.message)
      const retryAfter = Number(r.headers.get("retry-after"))
      assert.isTrue(retryAfter >= 1 && retryAfter <= 30, `retry-after ${retryAfter}`)
      assert.strictEqual((yield* sim.stats).requests, calls)
    })
  )

  it.scopedLive("a 400 from upstream is the client's fault: passed through, no failover", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["k1", "k2"])
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ model: "no/such-model" }))
      assert.isTrue(r.status === 400 || r.status === 404, `status ${r.status}`)
      assert.isDefined(JSON.parse(r.text).error)
      assert.strictEqual((yield* sim.stats).requests, 1)
    })
  )
})

describe("Gateway admin", () => {
  it.scopedLive("/metrics and /status: per-key numbers, never a secret; /healthz", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["metrics-a", "metrics-b"], {
        keys: simKeys(["metrics-a", "metrics-b"]).map((k) =>
          k.label === "metrics-b" ? { ...k, faults: { script: ["500" as const] } } : k
        )
      })
      for (let i = 0; i < 4; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      const metrics = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      assert.match(metrics, /# TYPE or_balancer_requests_total counter/)
      assert.match(metrics, /or_balancer_requests_total\{key="metrics-a",outcome="success"\} \d+/)
      assert.match(metrics, /or_balancer_requests_total\{key="metrics-b",outcome="ServerError"\} 1/)
      assert.match(metrics, /or_balancer_request_latency_ms_bucket\{key="metrics-a",le="\+Inf"\} \d+/)
      assert.match(metrics, /or_balancer_in_flight\{key="metrics-a"\} 0/)
      const statusText = yield* Effect.promise(() => fetch(`${gw.url}/status`).then((r) => r.text()))
      const status = JSON.parse(statusText)
      assert.strictEqual(status.totals.successes, 4)
      assert.strictEqual(status.totals.failures, 1)
      const b = status.keys.find((k: { id: string }) => k.id === "metrics-b")
      assert.strictEqual(b.errors.ServerError, 1)
      assert.strictEqual(b.inFlight, 0)
      for (const secret of secretsOf(sim)) {
        assert.notInclude(metrics, secret)
        assert.notInclude(statusText, secret)
        assert.notInclude(metrics, secret.slice(-12))
      }
      const health = yield* Effect.promise(() => fetch(`${gw.url}/healthz`).then((r) => r.status))
      assert.strictEqual(health, 200)
    })
  )

  it.scopedLive("credit remaining and cooldowns appear in /metrics and /status once known", () =>
    Effect.gen(function* () {
      const labels = ["gauge-rich", "gauge-broken"]
      const { sim, gw } = yield* setup(
        labels,
        {
          keys: simKeys(labels).map((k) =>
            k.label === "gauge-broken"
              ? { ...k, limit: 9, faults: { script: ["500" as const], loop: true } }
              : { ...k, limit: 5 }
          )
        },
        {
          strategy: [
            { name: "health-aware", failureThreshold: 1, baseCooldownMs: 60_000 },
            { name: "credit-aware" }
          ]
        }
      )
      // The richer key is tried first, fails, is ejected; the other answers.
      for (let i = 0; i < 3; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      assert.isAtLeast((yield* sim.stats).keys["gauge-broken"]!.requests, 1)
      const metrics = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      const rich = /or_balancer_credit_remaining_usd\{key="gauge-rich"\} ([0-9.e-]+)/.exec(metrics)
      assert.isNotNull(rich, metrics)
      const richCredit = Number(rich![1])
      assert.isTrue(richCredit > 4 && richCredit < 5, `credit ${richCredit}`)
      assert.match(metrics, /or_balancer_cooldown\{key="gauge-broken"\} 1/)
      assert.match(metrics, /or_balancer_cooldown\{key="gauge-rich"\} 0/)
      const status = yield* gw.status
      const byId = new Map(status.keys.map((k) => [k.id, k]))
      assert.strictEqual(byId.get("gauge-broken")!.health, "ejected")
      assert.isNotNull(byId.get("gauge-broken")!.coolingUntil)
      assert.strictEqual(byId.get("gauge-rich")!.health, "healthy")
      assert.isNull(byId.get("gauge-rich")!.coolingUntil)
      assert.strictEqual(byId.get("gauge-rich")!.credit, richCredit)
      assert.strictEqual(byId.get("gauge-broken")!.credit, 9)
      assert.isTrue(byId.get("gauge-rich")!.creditTracked)
    })
  )

  it.scopedLive("without a credit strategy /status says credit is not tracked", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(["plain"])
      const key = (yield* gw.status).keys[0]!
      assert.isNull(key.credit)
      assert.isFalse(key.creditTracked)
    })
  )

  it.scopedLive("reload swaps keys and strategy without dropping a request in flight", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["old", "new"], {
        keys: simKeys(["old", "new"]).map((k) =>
          k.label === "old" ? { ...k, faults: { latency: { kind: "fixed" as const, ms: 300 } } } : k
        )
      })
      // Only "old" at first.
      yield* gw.reload(yield* configFor(sim, {}, ["old"]))
      const slow = yield* Effect.fork(post(`${gw.url}/v1/chat/completions`, chatBody()))
      yield* waitUntil(
        Effect.map(sim.stats, (s) => s.inFlight === 1),
        "the slow request to reach upstream"
      )
      yield* gw.reload(
        yield* configFor(sim, { strategy: [{ name: "health-aware" }, { name: "weighted" }] }, ["new"])
      )
      for (let i = 0; i < 3; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      const first = yield* Fiber.join(slow)
      assert.strictEqual(first.status, 200)
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["old"]!.requests, 1)
      assert.strictEqual(stats.keys["new"]!.requests, 3)
      const status = yield* gw.status
      assert.deepStrictEqual(
        status.keys.map((k) => k.id),
        ["new"]
      )
      assert.deepStrictEqual(status.strategy, ["health-aware", "weighted"])
    })
  )

  it.scopedLive("a client that disconnects cancels the upstream call and releases the key", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["stall"], {
        keys: simKeys(["stall"]).map((k) => ({ ...k, faults: { script: ["stall" as const] } }))
      })
      const req = openChat(gw)
      yield* waitUntil(
        Effect.map(sim.stats, (s) => s.inFlight === 1),
        "the request to reach upstream"
      )
      assert.strictEqual((yield* gw.status).keys[0]!.inFlight, 1)
      req.destroy()
      yield* cancelledAndReleased(sim, gw)
    })
  )

  it.scopedLive("a client that leaves mid-stream cancels the upstream stream and releases the key", () =>
    Effect.gen(function* () {
      // Ten seconds of stream: only a cancel lets upstream finish within the waits below.
      const { sim, gw } = yield* setup(["midway"], {
        stream: { keepAlives: 1, chunks: 100, chunkIntervalMs: 100 }
      })
      const controller = new AbortController()
      const res = yield* Effect.promise(() =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: chatBody({ stream: true }),
          signal: controller.signal
        })
      )
      const reader = res.body!.getReader()
      yield* Effect.promise(() => reader.read())
      assert.strictEqual((yield* gw.status).keys[0]!.inFlight, 1)
      controller.abort()
      yield* cancelledAndReleased(sim, gw)
    })
  )

  it.scopedLive("drain: stops accepting, lets requests in flight finish", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(["slow"], { latency: { kind: "fixed", ms: 300 } })
      const inFlight = yield* Effect.fork(post(`${gw.url}/v1/chat/completions`, chatBody()))
      yield* waitUntil(
        Effect.map(gw.inFlight, (n) => n === 1),
        "the request to start"
      )
      const draining = yield* Effect.fork(gw.drain("5 seconds"))
      yield* waitUntil(
        Effect.promise(() =>
          fetch(`${gw.url}/healthz`).then(
            (r) => r.status === 503,
            () => true
          )
        ),
        "the gateway to refuse"
      )
      const r = yield* Fiber.join(inFlight)
      assert.strictEqual(r.status, 200)
      yield* Fiber.join(draining)
      const after = yield* Effect.promise(() =>
        fetch(`${gw.url}/healthz`).then(
          () => "answered",
          () => "refused"
        )
      )
      assert.strictEqual(after, "refused")
    })
  )
})

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
      const config = yield* GatewayConfig.decode({
        listen: { host: "127.0.0.1", port: 0 },
        baseUrl: url,
        tokens: ["GW_TOKEN"],
        keys: [{ id: "only", secretEnv: "KEY_ONLY" }],
        strategy: [{ name: "round-robin" }],
        retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 20, budget: false },
        deadlines: { keyWaitMs: 2000, drainMs: 1000 }
      }).pipe(
        Effect.withConfigProvider(
          ConfigProvider.fromMap(
            new Map([
              ["GW_TOKEN", TOKEN],
              ["KEY_ONLY", secret]
            ])
          )
        )
      )
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
  // reaches the client (issue 13, item 3): see GatewayEvilUpstream.test.ts ("a bad 2xx fails over").
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

// Most requests are forwarded with no fiber (round robin offers `unsafeSelect`); a stack without
// it (random draws from `Random`) runs every request on a fiber. Both must behave the same.
describe.each([
  { path: "fast path", strategy: "round-robin" },
  { path: "fiber path", strategy: "random" }
])("Gateway forwarding, $path", ({ strategy }) => {
  const extra = { strategy: [{ name: strategy }] }

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
