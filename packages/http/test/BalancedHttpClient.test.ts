/**
 * A plain `HttpClient` program, unaware of keys, balanced by wrapping its client.
 */
import { HttpClient, HttpClientError, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Balancer, Key, Monitor } from "@or-balancer/core"
import { Effect, Layer, Ref, Schedule, Stream } from "effect"
import { BalancedHttpClient } from "../src/index.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { balancerLayer, completion, errorBody, json, makeKeys, Recorder, serve } from "./support.js"

const body = { model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }], session_id: "s-1" }

/** What any program written against HttpClient does. The caller's own Authorization must not win. */
const program = (baseUrl: string) =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(
      HttpClientRequest.post(`${baseUrl}/chat/completions`).pipe(
        HttpClientRequest.bearerToken("caller-token"),
        HttpClientRequest.bodyUnsafeJson(body)
      )
    )
    return { status: response.status, json: (yield* response.json) as { usage?: { cost?: number } } }
  })

/** A streamed chat through whatever HttpClient is provided. */
const postStream = (baseUrl: string) =>
  Effect.flatMap(HttpClient.HttpClient, (client) =>
    client.execute(
      HttpClientRequest.post(`${baseUrl}/chat/completions`).pipe(
        HttpClientRequest.bodyUnsafeJson({ ...body, stream: true })
      )
    )
  )

const keysOf = (sim: Simulator.Handle) => sim.keys.map((k) => Key.make({ id: k.label, secret: k.secret }))

const balanced = (keys: ReadonlyArray<Key.Key>, options: BalancedHttpClient.Options = {}) =>
  BalancedHttpClient.layer(options).pipe(
    Layer.provideMerge(balancerLayer(keys)),
    Layer.provideMerge(NodeHttpClient.layerUndici)
  )

const reports = Effect.flatMap(Recorder, (r) => Ref.get(r.reports))

describe("BalancedHttpClient", () => {
  it.live(
    "a plain HttpClient program against the simulator: keys injected, 402 fails over, costs reported",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 11,
          keys: [
            { label: "broke", secret: Simulator.simulatedSecret(11, 0), limit: 0 },
            { label: "rich", secret: Simulator.simulatedSecret(11, 1), limit: 100 }
          ],
          retryAfterSeconds: 0
        })
        const keys = sim.keys.map((k) => Key.make({ id: k.label, secret: k.secret, account: k.account }))
        yield* Effect.gen(function* () {
          const first = yield* program(sim.baseUrl)
          const second = yield* program(sim.baseUrl)
          expect([first.status, second.status]).toEqual([200, 200])
          const stats = yield* sim.stats
          expect(stats.unauthenticated).toBe(0)
          expect(stats.keys.broke?.byOutcome["402"]).toBe(1)
          expect(stats.keys.rich?.byOutcome["200"]).toBe(2)
          const rs = yield* reports
          expect(rs).toEqual([
            { key: "broke", tag: "Failure", error: "InsufficientCredits" },
            { key: "rich", tag: "Success", cost: first.json.usage?.cost },
            { key: "rich", tag: "Success", cost: second.json.usage?.cost }
          ])
          expect(first.json.usage?.cost).toBeGreaterThan(0)
        }).pipe(Effect.provide(balanced(keys)))
      }).pipe(Effect.scoped)
  )

  it.live("a streamed answer is reported when its body ends, with the final chunk's cost", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 12,
        keys: [{ label: "k", secret: Simulator.simulatedSecret(12, 0), limit: 100 }],
        stream: { keepAlives: 2, chunks: 5, chunkIntervalMs: 1 }
      })
      const keys = keysOf(sim)
      yield* Effect.gen(function* () {
        const response = yield* postStream(sim.baseUrl)
        expect(response.status).toBe(200)
        expect(response.headers["content-type"]).toContain("text/event-stream")
        // Headers only: the attempt is not over yet.
        expect(yield* reports).toEqual([])
        const text = yield* response.text
        const usage = text
          .split("\n")
          .filter((l) => l.startsWith("data: {"))
          .map((l) => JSON.parse(l.slice(6)) as { usage?: { cost?: number } })
          .find((c) => c.usage?.cost !== undefined)?.usage?.cost
        expect(text).toContain(": ") // keep-alives passed through untouched
        expect(text.trim().endsWith("data: [DONE]")).toBe(true)
        expect(usage).toBeGreaterThan(0)
        expect(yield* reports).toEqual([{ key: "k", tag: "Success", cost: usage }])
        expect((yield* sim.stats).keys.k!.spend).toBeCloseTo(usage!, 12)
      }).pipe(Effect.provide(balanced(keys)))
    }).pipe(Effect.scoped)
  )

  it.live(
    "a mid-stream error reaches the caller as sent, is reported as the attempt's failure, and is not replayed",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 13,
          keys: [
            { label: "k1", secret: Simulator.simulatedSecret(13, 0), faults: { script: ["midstream"] } },
            { label: "k2", secret: Simulator.simulatedSecret(13, 1) }
          ]
        })
        const keys = keysOf(sim)
        yield* Effect.gen(function* () {
          const response = yield* postStream(sim.baseUrl)
          expect(response.status).toBe(200)
          const text = yield* response.text
          expect(text).toContain('"finish_reason":"error"')
          const rs = yield* reports
          expect(rs.length).toBe(1)
          expect(rs[0]!.key).toBe("k1")
          expect(rs[0]!.tag).toBe("Failure")
          expect(rs[0]!.error).toBeDefined()
          const stats = yield* sim.stats
          expect(stats.keys.k1!.requests).toBe(1)
          expect(stats.keys.k2!.requests).toBe(0)
        }).pipe(Effect.provide(balanced(keys)))
      }).pipe(Effect.scoped)
  )

  it.live("a streamed body the caller cancels early still ends its attempt", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 14,
        keys: [{ label: "k", secret: Simulator.simulatedSecret(14, 0) }],
        stream: { keepAlives: 0, chunks: 50, chunkIntervalMs: 5 }
      })
      const keys = keysOf(sim)
      yield* Effect.gen(function* () {
        const response = yield* postStream(sim.baseUrl)
        yield* response.stream.pipe(Stream.take(1), Stream.runDrain)
        const rs = yield* reports.pipe(
          Effect.filterOrFail((r) => r.length > 0),
          Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("5 seconds"))),
          Effect.orDie
        )
        expect(rs).toEqual([{ key: "k", tag: "Success", cost: undefined }])
        expect((yield* (yield* Monitor.Monitor).stats).inFlight).toBe(0)
      }).pipe(Effect.provide(balanced(keys)))
    }).pipe(Effect.scoped)
  )

  it.live("the pool's key is written last: a caller's header and request mapping never win", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res) => json(res, 200, completion("ok")))
      const keys = makeKeys(["k1"])
      yield* Effect.gen(function* () {
        const client = (yield* HttpClient.HttpClient).pipe(
          HttpClient.mapRequest(HttpClientRequest.setHeader("authorization", "Bearer sk-or-v1-callers-own"))
        )
        const response = yield* client.execute(
          HttpClientRequest.post(`${server.url}/chat/completions`).pipe(
            HttpClientRequest.bodyUnsafeJson(body)
          )
        )
        expect(response.status).toBe(200)
        expect(server.seen[0]?.key).toBe("k1")
      }).pipe(Effect.provide(balanced(keys)))
    }).pipe(Effect.scoped)
  )

  it.live("when every key fails, the caller gets the last upstream answer itself", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res) => json(res, 402, errorBody(402, "Insufficient credits")))
      const keys = makeKeys(["k1", "k2"])
      const result = yield* program(server.url).pipe(Effect.provide(balanced(keys)))
      expect(result.status).toBe(402)
      expect(result.json).toEqual(errorBody(402, "Insufficient credits"))
      expect(server.seen.map((s) => s.key)).toEqual(["k1", "k2"])
    }).pipe(Effect.scoped)
  )

  // Effect 3 wraps an error that crosses a span in a Proxy (to attach the span): an identity check
  // on the balancer's error once turned a 400 into RequestError { reason: "Transport" } there.
  it.live(
    "inside Effect.withSpan, the caller still gets the upstream answer itself (400, 404, every key 401)",
    () =>
      Effect.gen(function* () {
        const server = yield* serve((req, res) =>
          req.body.includes("bad-param")
            ? json(res, 400, errorBody(400, "temperature must be a number"))
            : req.body.includes("no/such-model")
              ? json(res, 404, errorBody(404, "No endpoints found"))
              : json(res, 401, errorBody(401, "User not found."))
        )
        const keys = makeKeys(["k1", "k2"])
        const send = (extra: Record<string, unknown>) =>
          Effect.flatMap(HttpClient.HttpClient, (client) =>
            client.execute(
              HttpClientRequest.post(`${server.url}/chat/completions`).pipe(
                HttpClientRequest.bodyUnsafeJson({ ...body, ...extra })
              )
            )
          ).pipe(
            Effect.flatMap((r) => Effect.map(r.json, (json) => ({ status: r.status, json }))),
            Effect.withSpan("caller's span"),
            Effect.provide(balanced(keys))
          )
        const bad = yield* send({ temperature: "bad-param" })
        expect(bad).toEqual({ status: 400, json: errorBody(400, "temperature must be a number") })
        const missing = yield* send({ model: "no/such-model" })
        expect(missing.status).toBe(404)
        const revoked = yield* send({})
        expect(revoked).toEqual({ status: 401, json: errorBody(401, "User not found.") })
      }).pipe(Effect.scoped)
  )

  it.live("with no answer at all, a RequestError whose cause is the typed balancer error", () =>
    Effect.gen(function* () {
      const keys = makeKeys(["k1", "k2"])
      // Nothing listens on port 1 of the loopback.
      const error = yield* Effect.flip(program("http://127.0.0.1:1/api/v1")).pipe(
        Effect.provide(balanced(keys))
      )
      expect(error).toBeInstanceOf(HttpClientError.RequestError)
      const cause = (error as HttpClientError.RequestError).cause
      expect(cause).toBeInstanceOf(Balancer.AllAttemptsFailed)
      expect((cause as Balancer.AllAttemptsFailed).attempts.map((a) => a.error._tag)).toContain("Transport")
    })
  )

  it.live("a key's baseUrl replaces the configured prefix", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res) => json(res, 200, completion("ok")))
      const [k] = makeKeys(["k1"])
      const key = Key.make({ id: "k1", secret: k!.secret, baseUrl: server.url })
      const result = yield* program("http://127.0.0.1:1/api/v1").pipe(
        Effect.provide(balanced([key], { baseUrl: "http://127.0.0.1:1/api/v1" }))
      )
      expect(result.status).toBe(200)
      expect(server.seen[0]?.path).toBe("/chat/completions")
    }).pipe(Effect.scoped)
  )
})
