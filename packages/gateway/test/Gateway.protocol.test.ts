// The gateway on the wire: passthrough of streams and models, tokens, body limits, refusals.
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import * as GatewayConfig from "../src/GatewayConfig.js"
import { chatBody, MODEL, post, setup, simKeys, TOKEN, waitUntil } from "./GatewaySupport.js"

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
