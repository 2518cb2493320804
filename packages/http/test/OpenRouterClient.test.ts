/**
 * The balanced client over real loopback HTTP: against the simulator, and against small scripted
 * servers where a test needs an exact answer (Retry-After timing, malformed bodies).
 */
import { describe, expect, it } from "@effect/vitest"
import { Balancer, Key, UpstreamError } from "@or-balancer/core"
import { Chunk, Duration, Effect, Fiber, Ref, Stream, TestClock } from "effect"
import { OpenRouterClient } from "../src/index.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { clientLayer, completion, errorBody, json, makeKeys, Recorder, serve, sleep } from "./support.js"

const request = { model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }

const simKeys = (sim: Simulator.Handle) =>
  sim.keys.map((k) => Key.make({ id: k.label, secret: k.secret, account: k.account }))

const simConfig = (
  keys: ReadonlyArray<Partial<Simulator.KeyConfig> & { label: string }>
): Simulator.Config => ({
  seed: 7,
  keys: keys.map((k, i) => ({ secret: Simulator.simulatedSecret(7, i), account: "acme", ...k })),
  accounts: { acme: { rpm: null } },
  stream: { keepAlives: 2, chunks: 4, chunkIntervalMs: 1 },
  // No Retry-After cooldowns here: the 429 test below times them exactly on a TestClock.
  retryAfterSeconds: 0
})

/** Runs `f` with a simulator and a client balanced over its keys. */
const withSim = <A, E>(
  keys: ReadonlyArray<Partial<Simulator.KeyConfig> & { label: string }>,
  f: (
    sim: Simulator.Handle
  ) => Effect.Effect<A, E, OpenRouterClient.OpenRouterClient | Recorder | Balancer.Balancer>,
  options: { readonly timeout?: Duration.DurationInput } = {}
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sim = yield* Simulator.make(simConfig(keys))
      return yield* f(sim).pipe(Effect.provide(clientLayer(simKeys(sim), sim.baseUrl, {}, options)))
    })
  )

const reports = Effect.flatMap(Recorder, (r) => Ref.get(r.reports))

describe("OpenRouterClient over the simulator", () => {
  it.live("chat goes through a pool of 3 keys, reporting each answer's cost", () =>
    withSim([{ label: "a" }, { label: "b" }, { label: "c" }], (sim) =>
      Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const answers = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => client.chat(request))
        for (const a of answers) {
          expect(a.choices[0]?.message.content).toEqual(expect.any(String))
          expect(a.usage?.cost).toBeGreaterThan(0)
        }
        const stats = yield* sim.stats
        expect([stats.keys.a?.requests, stats.keys.b?.requests, stats.keys.c?.requests]).toEqual([2, 2, 2])
        const rs = yield* reports
        expect(rs.map((r) => r.tag)).toEqual(Array(6).fill("Success"))
        expect(rs.map((r) => r.cost)).toEqual(answers.map((a) => a.usage?.cost))
      })
    )
  )

  it.live("402 on one key fails over, and the key is marked exhausted", () =>
    withSim([{ label: "a", limit: 0 }, { label: "b" }, { label: "c" }], (sim) =>
      Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        yield* Effect.forEach([1, 2, 3, 4], () => client.chat(request))
        const stats = yield* sim.stats
        expect(stats.keys.a?.requests).toBe(1)
        expect(stats.keys.a?.byOutcome["402"]).toBe(1)
        const rs = yield* reports
        expect(rs[0]).toEqual({ key: "a", tag: "Failure", error: "InsufficientCredits" })
        expect(rs.filter((r) => r.key === "a").length).toBe(1)
        expect(rs.filter((r) => r.tag === "Success").length).toBe(4)
      })
    )
  )

  it.live("401 ejects the key; with every key revoked the request fails typed", () =>
    Effect.gen(function* () {
      yield* withSim([{ label: "a", revoked: true }, { label: "b" }], (sim) =>
        Effect.gen(function* () {
          const client = yield* OpenRouterClient.OpenRouterClient
          yield* Effect.forEach([1, 2, 3], () => client.chat(request))
          expect((yield* sim.stats).keys.a?.requests).toBe(1)
          expect((yield* reports)[0]).toEqual({ key: "a", tag: "Failure", error: "Unauthorized" })
        })
      )
      yield* withSim(
        [
          { label: "a", revoked: true },
          { label: "b", revoked: true }
        ],
        () =>
          Effect.gen(function* () {
            const client = yield* OpenRouterClient.OpenRouterClient
            const error = yield* Effect.flip(client.chat(request))
            expect(error._tag).toBe("AllAttemptsFailed")
            const all = error as Balancer.AllAttemptsFailed
            expect(all.attempts.map((a) => [a.keyId, a.error._tag])).toEqual([
              ["a", "Unauthorized"],
              ["b", "Unauthorized"]
            ])
          })
      )
    })
  )

  it.live("a 5xx, a reset connection and a stall (per-attempt timeout) each fail over to another key", () =>
    withSim(
      [{ label: "a", faults: { script: ["503", "reset", "stall"] } }, { label: "b" }],
      (sim) =>
        Effect.gen(function* () {
          const client = yield* OpenRouterClient.OpenRouterClient
          for (let i = 0; i < 3; i++) yield* client.chat(request)
          const failures = (yield* reports).filter((r) => r.tag === "Failure")
          expect(failures).toEqual([
            { key: "a", tag: "Failure", error: "ServerError" },
            { key: "a", tag: "Failure", error: "Transport" },
            { key: "a", tag: "Failure", error: "Timeout" }
          ])
          expect((yield* sim.stats).keys.b?.byOutcome["200"]).toBe(3)
        }),
      { timeout: "300 millis" }
    )
  )

  it.live("streams chunks past keep-alives, and reports the final usage cost", () =>
    withSim([{ label: "a" }], () =>
      Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(client.chatStream(request)))
        const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("")
        expect(text.length).toBeGreaterThan(0)
        const cost = [...chunks].reverse().find((c) => c.usage != null)?.usage?.cost
        expect(cost).toBeGreaterThan(0)
        expect(yield* reports).toEqual([{ key: "a", tag: "Success", cost }])
      })
    )
  )

  it.live("a stream failing before its first chunk fails over", () =>
    withSim([{ label: "a", faults: { script: ["502"] } }, { label: "b" }], (sim) =>
      Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const chunks = yield* Stream.runCollect(client.chatStream(request))
        expect(Chunk.size(chunks)).toBeGreaterThan(0)
        expect((yield* reports).map((r) => [r.key, r.tag])).toEqual([
          ["a", "Failure"],
          ["b", "Success"]
        ])
        expect((yield* sim.stats).requests).toBe(2)
      })
    )
  )

  it.live("a mid-stream error is a typed stream failure, reported, and not replayed", () =>
    withSim([{ label: "a", faults: { script: ["midstream"] } }, { label: "b" }], (sim) =>
      Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const seen: Array<string> = []
        const error = yield* client.chatStream(request).pipe(
          Stream.runForEach((c) => Effect.sync(() => seen.push(c.choices[0]?.delta?.content ?? ""))),
          Effect.flip
        )
        expect(UpstreamError.isUpstreamError(error)).toBe(true)
        expect(seen.length).toBeGreaterThan(0)
        expect((yield* sim.stats).requests).toBe(1)
        expect(yield* reports).toEqual([{ key: "a", tag: "Failure", error: error._tag }])
      })
    )
  )
})

describe("OpenRouterClient over scripted servers", () => {
  it.effect("429 with Retry-After waits for it (TestClock), then retries", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res, n) =>
        n === 1
          ? json(res, 429, errorBody(429, "Rate limit exceeded"), {
              "retry-after": "2",
              "x-ratelimit-limit": "20",
              "x-ratelimit-remaining": "0"
            })
          : json(res, 200, completion("ok"))
      )
      const keys = makeKeys(["k1"])
      yield* Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const fiber = yield* Effect.fork(client.chat(request))
        // Wait (really) until the client sleeps on the cooldown.
        while ((yield* TestClock.sleeps()).length === 0) yield* Effect.promise(() => sleep(5))
        yield* TestClock.adjust("1999 millis")
        yield* Effect.promise(() => sleep(50))
        expect(server.seen.length).toBe(1)
        yield* TestClock.adjust("1 millis")
        const answer = yield* Fiber.join(fiber)
        expect(answer.choices[0]?.message.content).toBe("ok")
        expect(server.seen.length).toBe(2)
        expect((yield* reports)[0]).toEqual({ key: "k1", tag: "Failure", error: "RateLimited" })
        const balancer = yield* Balancer.Balancer
        yield* TestClock.adjust("0 millis")
        expect(yield* balancer.cooldowns).toEqual([])
      }).pipe(Effect.provide(clientLayer(keys, server.url)))
    }).pipe(Effect.scoped)
  )

  it.live("sends the request through untouched (unknown fields too), with attribution headers", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res) =>
        json(res, 200, completion("ok", 0.5, { extra_field: { kept: true } }))
      )
      const keys = makeKeys(["k1"])
      const answer = yield* Effect.flatMap(OpenRouterClient.OpenRouterClient, (c) =>
        c.chat({ ...request, session_id: "s1", provider: { order: ["openai"] }, custom_flag: [1, 2] })
      ).pipe(Effect.provide(clientLayer(keys, server.url, {}, { referer: "https://x.test", title: "tests" })))
      expect((answer as Record<string, unknown>).extra_field).toEqual({ kept: true })
      const seen = server.seen[0]!
      expect(seen.path).toBe("/chat/completions")
      expect(seen.key).toBe("k1")
      expect(seen.headers["http-referer"]).toBe("https://x.test")
      expect(seen.headers["x-title"]).toBe("tests")
      expect(JSON.parse(seen.body)).toEqual({
        ...request,
        session_id: "s1",
        provider: { order: ["openai"] },
        custom_flag: [1, 2],
        stream: false
      })
    }).pipe(Effect.scoped)
  )

  it.live("a key's own baseUrl overrides the configured one", () =>
    Effect.gen(function* () {
      const other = yield* serve((_req, res) => json(res, 200, completion("from key base")))
      const [k] = makeKeys(["k1"])
      const key = Key.make({ id: "k1", secret: k!.secret, baseUrl: other.url })
      const answer = yield* Effect.flatMap(OpenRouterClient.OpenRouterClient, (c) => c.chat(request)).pipe(
        Effect.provide(clientLayer([key], "http://127.0.0.1:1/api/v1"))
      )
      expect(answer.choices[0]?.message.content).toBe("from key base")
    }).pipe(Effect.scoped)
  )

  it.live("a malformed body is a typed InvalidResponse naming what was wrong, and fails over", () =>
    Effect.gen(function* () {
      const server = yield* serve((req, res) =>
        req.key === "k1"
          ? json(res, 200, "<html>not json</html>")
          : req.key === "k2"
            ? json(res, 200, { id: "x", model: "m" })
            : json(res, 200, completion("fine"))
      )
      const keys = makeKeys(["k1", "k2", "k3"])
      yield* Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        const notJson = yield* Effect.flip(client.chatWith(keys[0]!, request))
        expect(notJson._tag).toBe("InvalidResponse")
        expect(notJson.message).toContain("not JSON")
        const noChoices = yield* Effect.flip(client.chatWith(keys[1]!, request))
        expect(noChoices._tag).toBe("InvalidResponse")
        expect(noChoices.message).toContain("choices")
        const answer = yield* client.chat(request)
        expect(answer.choices[0]?.message.content).toBe("fine")
      }).pipe(Effect.provide(clientLayer(keys, server.url)))
    }).pipe(Effect.scoped)
  )

  it.live("a 400 fails the request at once, with no other key tried", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res) =>
        json(res, 400, errorBody(400, "nope is not a valid model ID"))
      )
      const keys = makeKeys(["k1", "k2"])
      const error = yield* Effect.flatMap(OpenRouterClient.OpenRouterClient, (c) =>
        Effect.flip(c.chat({ ...request, model: "nope" }))
      ).pipe(Effect.provide(clientLayer(keys, server.url)))
      expect(error._tag).toBe("ModelNotFound")
      expect((error as UpstreamError.ModelNotFound).model).toBe("nope")
      expect(server.seen.length).toBe(1)
    }).pipe(Effect.scoped)
  )
})
