/**
 * Every route a client uses, through the real `openai` client pointed at the gateway: the POST
 * routes balanced and failed over as chat is, the model list with no key (so it never changes a
 * key's health), a generation looked up with the key that made it; no key secret in any answer.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import OpenAI from "openai"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const MODEL = "openai/gpt-4o-mini"
const EMBEDDING = "openai/text-embedding-3-small"

/** `dead` (revoked: 401) first in the round robin, then `live`; `extra` goes into the config. */
const setup = (extra: Record<string, unknown> = {}, faults?: Simulator.KeyConfig["faults"]) =>
  Effect.gen(function* () {
    const keys = simKeys(["dead", "live"]).map((k) =>
      k.label === "dead" ? { ...k, revoked: faults === undefined, ...(faults ? { faults } : {}) } : k
    )
    const sim = yield* Simulator.make({ seed: 7, keys })
    const gw = yield* Gateway.make(yield* configFor(sim, extra))
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: TOKEN, maxRetries: 0 })
    const secrets = sim.keys.map((k) => Redacted.value(k.secret))
    const noSecret = (what: string, value: unknown) => {
      const text = typeof value === "string" ? value : JSON.stringify(value)
      for (const s of secrets) assert.notInclude(text, s, what)
    }
    return { sim, gw, client, noSecret }
  })

/** A raw request: status, every header and the body, to look for secrets in all of it. */
const raw = (url: string, init: RequestInit = {}) =>
  Effect.promise(() =>
    fetch(url, init).then(async (r) => ({
      status: r.status,
      headers: [...r.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n"),
      text: await r.text()
    }))
  )

const collect = async <T>(stream: AsyncIterable<T>): Promise<Array<T>> => {
  const out: Array<T> = []
  for await (const e of stream) out.push(e)
  return out
}

/** Which keys the simulator saw on an inference route. */
const keysSeen = (sim: Simulator.Handle, route: string) =>
  Effect.map(sim.recentRequests, (rs) => rs.filter((r) => r.route === route).map((r) => r.key))

describe("Gateway routes", () => {
  it.scopedLive("embeddings.create: balanced, failed over from a revoked key, cost counted, no secret", () =>
    Effect.gen(function* () {
      const { sim, gw, client, noSecret } = yield* setup()
      for (let i = 0; i < 2; i++) {
        const r = yield* Effect.promise(() => client.embeddings.create({ model: EMBEDDING, input: "hello" }))
        assert.strictEqual(r.object, "list")
        assert.isAbove(r.data[0]!.embedding.length, 0)
        noSecret("embeddings", r)
      }
      const seen = yield* keysSeen(sim, "embeddings")
      assert.include(seen, "dead")
      assert.strictEqual(seen.filter((k) => k === "live").length, 2)
      const status = yield* gw.status
      const live = status.keys.find((k) => k.id === "live")!
      assert.strictEqual(live.successes, 2)
      // The embeddings' `usage.cost` is read as chat's is.
      assert.isAbove(live.spendUsd, 0)
      assert.isAtLeast(status.keys.find((k) => k.id === "dead")!.failures, 1)
    })
  )

  it.scopedLive("completions.create, plain and streamed: failed over from a revoked key", () =>
    Effect.gen(function* () {
      const { sim, client, noSecret } = yield* setup()
      const plain = yield* Effect.promise(() =>
        client.completions.create({ model: MODEL, prompt: "Say hi", max_tokens: 8 })
      )
      assert.strictEqual(plain.object, "text_completion")
      assert.isString(plain.choices[0]!.text)
      noSecret("completion", plain)
      const chunks = yield* Effect.promise(() =>
        client.completions
          .create({ model: MODEL, prompt: "Say hi", max_tokens: 8, stream: true })
          .then((s) => collect(s))
      )
      assert.isAbove(chunks.length, 0)
      assert.isAbove(chunks.map((c) => c.choices[0]?.text ?? "").join("").length, 0)
      noSecret("completion stream", chunks)
      const seen = yield* keysSeen(sim, "completions")
      assert.include(seen, "dead")
      assert.strictEqual(seen.filter((k) => k === "live").length, 2)
    })
  )

  it.scopedLive("responses.create, plain and streamed: failed over from a revoked key, no secret", () =>
    Effect.gen(function* () {
      const { sim, client, noSecret } = yield* setup()
      const plain = yield* Effect.promise(() => client.responses.create({ model: MODEL, input: "Say hi" }))
      assert.strictEqual(plain.object, "response")
      assert.strictEqual(plain.status, "completed")
      assert.isAbove(plain.output_text.length, 0)
      noSecret("response", plain)
      const events = yield* Effect.promise(() =>
        client.responses.create({ model: MODEL, input: "Say hi", stream: true }).then((s) => collect(s))
      )
      const types = events.map((e) => e.type)
      assert.strictEqual(types[0], "response.created")
      assert.strictEqual(types[types.length - 1], "response.completed")
      assert.include(types, "response.output_text.delta")
      noSecret("response stream", events)
      const seen = yield* keysSeen(sim, "responses")
      assert.include(seen, "dead")
      assert.strictEqual(seen.filter((k) => k === "live").length, 2)
    })
  )

  it.scopedLive(
    "a Responses stream whose first event is an `error` is failed over; the client sees a clean one",
    () =>
      Effect.gen(function* () {
        const { sim, gw, client } = yield* setup({}, { script: ["errorfirst"] })
        const events = yield* Effect.promise(() =>
          client.responses.create({ model: MODEL, input: "Say hi", stream: true }).then((s) => collect(s))
        )
        const types = events.map((e) => e.type)
        assert.notInclude(types, "error")
        assert.strictEqual(types[types.length - 1], "response.completed")
        assert.deepStrictEqual(yield* keysSeen(sim, "responses"), ["dead", "live"])
        const dead = (yield* gw.status).keys.find((k) => k.id === "dead")!
        assert.strictEqual(dead.failures, 1)
      })
  )

  it.scopedLive("models.list and models.retrieve: sent with no key; a key's health never changes", () =>
    Effect.gen(function* () {
      const { sim, gw, client, noSecret } = yield* setup({
        strategy: [
          { name: "health-aware", failureThreshold: 1, baseCooldownMs: 60_000 },
          { name: "round-robin" }
        ]
      })
      // A chat ejects the revoked key (and is served by the other).
      const chat = yield* Effect.promise(() =>
        client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }] })
      )
      assert.isString(chat.id)
      const before = yield* gw.status
      const dead = before.keys.find((k) => k.id === "dead")!
      assert.strictEqual(dead.health, "ejected")
      const simBefore = yield* sim.stats
      for (let i = 0; i < 10; i++) {
        const list = yield* Effect.promise(() => client.models.list())
        assert.isTrue(list.data.some((m) => m.id === MODEL))
        noSecret("models", list.data)
      }
      const one = yield* Effect.promise(() => client.models.retrieve(MODEL))
      assert.strictEqual(one.id, MODEL)
      const after = yield* gw.status
      for (const k of after.keys) {
        const b = before.keys.find((x) => x.id === k.id)!
        assert.strictEqual(k.health, b.health, k.id)
        assert.strictEqual(k.requests, b.requests, `${k.id}: a listing is no key's request`)
        assert.strictEqual(k.successes, b.successes, k.id)
      }
      const simAfter = yield* sim.stats
      for (const label of ["dead", "live"])
        assert.strictEqual(simAfter.keys[label]!.requests, simBefore.keys[label]!.requests, label)
      // A model that does not exist is the upstream's 404, passed on.
      const missing = yield* raw(`${gw.url}/v1/models/nobody/nothing`, {
        headers: { authorization: `Bearer ${TOKEN}` }
      })
      assert.strictEqual(missing.status, 404)
      // The gateway token is still needed without `publicModels`.
      assert.strictEqual((yield* raw(`${gw.url}/v1/models`)).status, 401)
    })
  )

  it.scopedLive("publicModels: the model list needs no gateway token; the other routes still do", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup({ publicModels: true })
      const list = yield* raw(`${gw.url}/api/v1/models`)
      assert.strictEqual(list.status, 200)
      assert.isTrue(
        (JSON.parse(list.text) as { data: Array<{ id: string }> }).data.some((m) => m.id === MODEL)
      )
      const one = yield* raw(`${gw.url}/v1/models/${MODEL}`)
      assert.strictEqual(one.status, 200)
      assert.strictEqual((JSON.parse(one.text) as { id: string }).id, MODEL)
      const chat = yield* raw(`${gw.url}/v1/embeddings`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: EMBEDDING, input: "x" })
      })
      assert.strictEqual(chat.status, 401)
      assert.strictEqual((yield* raw(`${gw.url}/v1/generation?id=gen-1`)).status, 401)
    })
  )

  it.scopedLive("generation: looked up with the key that served it; never a secret", () =>
    Effect.gen(function* () {
      // Two accounts: OpenRouter (and the simulator) answer a generation only to its own account.
      const keys = simKeys(["a", "b"]).map((k) => (k.label === "b" ? { ...k, account: "globex" } : k))
      const sim = yield* Simulator.make({ seed: 7, keys })
      const gw = yield* Gateway.make(yield* configFor(sim))
      const secrets = sim.keys.map((k) => Redacted.value(k.secret))
      const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }
      const served: Array<string | undefined> = []
      for (let i = 0; i < 2; i++) {
        const chat = yield* raw(`${gw.url}/v1/chat/completions`, {
          method: "POST",
          headers: auth,
          body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }] })
        })
        assert.strictEqual(chat.status, 200)
        const id = (JSON.parse(chat.text) as { id: string }).id
        served.push((yield* keysSeen(sim, "chat")).at(-1))
        const gen = yield* raw(`${gw.url}/api/v1/generation?id=${id}`, { headers: auth })
        assert.strictEqual(gen.status, 200, gen.text)
        assert.strictEqual((JSON.parse(gen.text) as { data: { id: string } }).data.id, id)
        for (const s of secrets) assert.notInclude(gen.text + gen.headers, s)
      }
      // One chat on each account's key: each lookup found its own (another account's key gets a 404).
      assert.sameMembers(served, ["a", "b"])
      const unknown = yield* raw(`${gw.url}/v1/generation?id=gen-nope`, { headers: auth })
      assert.strictEqual(unknown.status, 404)
    })
  )

  it.scopedLive(
    "every key revoked: each POST route gets the gateway's own 503, never the upstream's 401",
    () =>
      Effect.gen(function* () {
        const keys = simKeys(["x", "y"]).map((k) => ({ ...k, revoked: true }))
        const sim = yield* Simulator.make({ seed: 7, keys })
        const gw = yield* Gateway.make(yield* configFor(sim))
        const secrets = sim.keys.map((k) => Redacted.value(k.secret))
        const bodies: ReadonlyArray<readonly [string, unknown]> = [
          ["/v1/embeddings", { model: EMBEDDING, input: "x" }],
          ["/v1/completions", { model: MODEL, prompt: "x" }],
          ["/api/v1/completions", { model: MODEL, prompt: "x", stream: true }],
          ["/v1/responses", { model: MODEL, input: "x" }],
          ["/v1/responses", { model: MODEL, input: "x", stream: true }]
        ]
        for (const [path, body] of bodies) {
          const r = yield* raw(`${gw.url}${path}`, {
            method: "POST",
            headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
            body: JSON.stringify(body)
          })
          assert.strictEqual(r.status, 503, path)
          const error = (JSON.parse(r.text) as { error: { metadata: { reason: string } } }).error
          assert.strictEqual(error.metadata.reason, "keys_unavailable", path)
          for (const s of secrets) assert.notInclude(r.text + r.headers, s, path)
        }
        // A generation lookup with no key able to answer is the gateway's own 503 too.
        const gen = yield* raw(`${gw.url}/v1/generation?id=gen-1`, {
          headers: { authorization: `Bearer ${TOKEN}` }
        })
        assert.strictEqual(gen.status, 503)
        for (const s of secrets) assert.notInclude(gen.text + gen.headers, s)
      })
  )

  it.scopedLive("the wrong method on a client route is a 405 naming what is allowed", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup()
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["GET", "/v1/embeddings", "POST"],
        ["GET", "/api/v1/responses", "POST"],
        ["PUT", "/v1/completions", "POST"],
        ["POST", "/v1/models/openai/gpt-4o-mini", "GET"],
        ["DELETE", "/v1/generation", "GET"]
      ]
      for (const [method, path, allow] of cases) {
        const r = yield* raw(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } })
        assert.strictEqual(r.status, 405, `${method} ${path}`)
        assert.include(r.headers, `allow: ${allow}`, `${method} ${path}`)
        assert.isString((JSON.parse(r.text) as { error: { message: string } }).error.message)
      }
      assert.strictEqual((yield* raw(`${gw.url}/v1/nothing`)).status, 404)
      // A dot segment under /models is not passed on (an upstream may resolve it to a keyed route).
      const dotted = yield* Effect.promise(
        () =>
          new Promise<{ status: number; text: string }>((resolve, reject) =>
            http
              .get(
                {
                  host: "127.0.0.1",
                  port: new URL(gw.url).port,
                  path: "/v1/models/x/../../key",
                  headers: { authorization: `Bearer ${TOKEN}` }
                },
                (r) => {
                  let text = ""
                  r.on("data", (c: Buffer) => (text += c.toString()))
                  r.on("end", () => resolve({ status: r.statusCode ?? 0, text }))
                }
              )
              .on("error", reject)
          )
      )
      // The gateway's own 404: nothing was sent upstream.
      assert.strictEqual(dotted.status, 404)
      assert.include(dotted.text, "no route for GET /v1/models/x/../../key")
    })
  )
  it.scopedLive(
    "with no request log: the caller's attribution, request id and trace context reach upstream as sent",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["a"]) })
        const gw = yield* Gateway.make(yield* configFor(sim))
        const sent = {
          "x-request-id": "caller-id-7",
          traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          tracestate: "vendor=1",
          "http-referer": "https://app.example",
          "x-title": "An app"
        }
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody(), sent)
        assert.strictEqual(r.status, 200)
        const seen = (yield* sim.recentRequests).at(-1)!
        assert.strictEqual(seen.key, "a")
        for (const [name, value] of Object.entries(sent)) assert.strictEqual(seen.headers[name], value, name)
      })
  )
})
