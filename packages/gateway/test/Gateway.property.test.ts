/**
 * The gateway against arbitrary callers: fast-check builds requests (methods, paths, headers,
 * bodies, framing, pacing, clients that leave) and sends them as raw bytes over loopback to one
 * gateway in front of a healthy simulator. Whatever the input: the process keeps serving, no
 * caller's input gets a 5xx, a well-formed request's 4xx carries a JSON error, every request is
 * answered or closed within a bound, and once a batch is done nothing is left in flight.
 * Known failures are `it.skip`s naming their entry in /work/notes/fuzz-findings.md (F1…).
 * Reproduce a failure with the seed fast-check prints: `FUZZ_SEED=<seed> npx vitest run …`.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import fc from "fast-check"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"
import {
  BODY_LIMIT,
  hasToken,
  malformedArb,
  MODEL,
  pipelineArb,
  planOf,
  protectedRoute,
  requestArb,
  type Request
} from "./GatewayFuzz.js"
import { answers, bodyToClose, exchange, type Result } from "./RawHttp.js"

const SEED = Number(process.env.FUZZ_SEED ?? 20261206)
/** An answer or a close must come within this, slow bodies included. */
const BOUND_MS = 8000

class Fixture extends Context.Tag("Fixture")<
  Fixture,
  { readonly sim: Simulator.Handle; readonly gw: Gateway.Gateway }
>() {}

const start = (extra: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["k1", "k2", "k3"]) })
    const gw = yield* Gateway.make(
      yield* configFor(sim, {
        bodyLimitBytes: BODY_LIMIT,
        strategy: [{ name: "health-aware" }, { name: "round-robin" }],
        ...extra
      })
    )
    return { sim, gw }
  })

const FixtureLive = Layer.scoped(Fixture, start())

// --- Checks ------------------------------------------------------------------------------------

const describeResult = (r: Result) =>
  `${r.end} after ${r.ms} ms, status ${r.status}: ${r.raw.subarray(0, 300).toString("latin1")}`

/** The answer-or-close bound and no 5xx: whatever the caller sent. */
const answeredOrClosed = (r: Result) => {
  assert.notStrictEqual(r.end, "timeout", `no answer nor close within ${BOUND_MS} ms: ${describeResult(r)}`)
  if (r.status !== undefined)
    assert.isBelow(r.status, 500, `a 5xx for the caller's input: ${describeResult(r)}`)
}

/** A 4xx to a well-formed request is an OpenAI-shaped JSON error (HEAD: no body to check). */
const jsonError = (req: Request, r: Result) => {
  // No way out of the dashboard's asset folder, encoded or not.
  if (/^\/dashboard\/assets\/.*(\.\.|%2e%2e)/i.test(req.path))
    assert.notStrictEqual(r.status, 200, describeResult(r))
  if (r.status === undefined || r.status < 400 || req.method === "HEAD") return
  // The dashboard is a browser page: its own errors are plain text, not the API's JSON.
  if (req.path.startsWith("/dashboard")) return
  const text = r.body ?? bodyToClose(r)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return assert.fail(`a ${r.status} without a JSON body: ${describeResult(r)}`)
  }
  const error = (json as { error?: { message?: unknown } } | null)?.error
  assert.isString(error?.message, `a ${r.status} without error.message: ${text.slice(0, 300)}`)
}

/** No protected route is served without the token; with it, no 401. */
const authChecked = (req: Request, status: number | undefined) => {
  if (status === undefined || !protectedRoute(req)) return
  if (hasToken(req)) assert.notStrictEqual(status, 401, `${req.method} ${req.path} with the token`)
  else
    assert.strictEqual(
      status,
      401,
      `${req.method} ${req.path} with authorization ${JSON.stringify(req.auth)}`
    )
}

/** Nothing in flight: the server's requests, every key's leases, the monitor's totals, upstream. */
const settles = Effect.gen(function* () {
  const { sim, gw } = yield* Fixture
  let last = ""
  for (let i = 0; i < 300; i++) {
    const s = yield* gw.status
    const up = yield* sim.stats
    const keys = s.keys.map((k) => k.inFlight)
    if (
      s.inFlightRequests === 0 &&
      s.totals.inFlight === 0 &&
      keys.every((n) => n === 0) &&
      up.inFlight === 0
    )
      return
    last = `requests ${s.inFlightRequests}, monitor ${s.totals.inFlight}, keys ${keys}, upstream ${up.inFlight}`
    yield* Effect.sleep(Duration.millis(10))
  }
  assert.fail(`in-flight counts did not return to 0 within 3 s: ${last}`)
})

/** The upstream is healthy: nothing a caller sends may take a key out. */
const keysHealthy = Effect.gen(function* () {
  const { gw } = yield* Fixture
  for (const k of (yield* gw.status).keys) assert.strictEqual(k.health, "healthy", `${k.id}: ${k.reason}`)
})

/** The server still serves a known-good request. */
const stillServes = Effect.gen(function* () {
  const { gw } = yield* Fixture
  const health = yield* Effect.promise(() => fetch(`${gw.url}/healthz`).then((r) => r.status))
  assert.strictEqual(health, 200)
  const chat = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
  assert.strictEqual(chat.status, 200, chat.text)
})

const runs = (n: number) => ({ timeout: 120_000, fastCheck: { numRuns: n, seed: SEED } })

layer(FixtureLive, { excludeTestServices: true, timeout: "30 seconds" })(
  "Gateway under arbitrary input",
  (it) => {
    it.effect.prop(
      "well-formed requests with hostile content: no 5xx, JSON 4xx, bounded, nothing left in flight",
      [fc.array(requestArb, { minLength: 1, maxLength: 6 })],
      ([batch]) =>
        Effect.gen(function* () {
          const { gw } = yield* Fixture
          const results = yield* Effect.promise(() =>
            Promise.all(batch.map((req) => exchange(gw.port, planOf(req), BOUND_MS)))
          )
          batch.forEach((req, i) => {
            const r = results[i]!
            answeredOrClosed(r)
            authChecked(req, r.status)
            if (r.end === "closed") jsonError(req, r)
          })
          yield* settles
          yield* keysHealthy
          yield* stillServes
        }),
      runs(200)
    )

    it.effect.prop(
      "bytes that are not valid HTTP: no 5xx, bounded, nothing left in flight",
      [fc.array(malformedArb, { minLength: 1, maxLength: 4 })],
      ([batch]) =>
        Effect.gen(function* () {
          const { gw } = yield* Fixture
          const results = yield* Effect.promise(() =>
            Promise.all(batch.map((p) => exchange(gw.port, p, BOUND_MS)))
          )
          for (const r of results) answeredOrClosed(r)
          yield* settles
          yield* keysHealthy
          yield* stillServes
        }),
      runs(80)
    )

    it.effect.prop(
      "pipelined requests on one connection: each answered in turn, a bad one poisons nothing after it",
      [pipelineArb],
      ([{ requests, plan }]) =>
        Effect.gen(function* () {
          const { gw } = yield* Fixture
          const r = yield* Effect.promise(() => exchange(gw.port, plan, BOUND_MS))
          assert.notStrictEqual(r.end, "timeout", describeResult(r))
          const got = answers(r.raw)
          got.forEach((a, i) => {
            assert.isBelow(a.status ?? 0, 500, `answer ${i}: ${describeResult(r)}`)
            authChecked(requests[i]!, a.status)
          })
          // Every request answered, unless an answer closed the connection (a 413 does).
          const closedAt = got.findIndex((a) => /close/i.test(a.headers.get("connection") ?? ""))
          if (closedAt === -1 || closedAt === requests.length - 1) {
            assert.strictEqual(got.length, requests.length, describeResult(r))
            assert.strictEqual(got[got.length - 1]!.status, 200, describeResult(r))
          } else assert.strictEqual(got.length, closedAt + 1, describeResult(r))
          yield* settles
          yield* keysHealthy
        }),
      runs(80)
    )

    // --- Issue 13, item 7: a caller's 400 is no key's failure -------------------------------

    it.effect("a caller's bad request gets the upstream's 400 and leaves the key healthy and serving", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const bad = yield* post(
          `${gw.url}/v1/chat/completions`,
          JSON.stringify({ model: MODEL, messages: [] })
        )
        assert.strictEqual(bad.status, 400)
        assert.include(JSON.parse(bad.text).error.message, "messages")
        const unknown = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ model: "nope/nope" }))
        assert.strictEqual(unknown.status, 400)
        yield* keysHealthy
        yield* stillServes
      })
    )

    // --- Known failures (see /work/notes/fuzz-findings.md); unskip once fixed --------------

    // F1: Node's own answers (a parse error, 431, 417, no Host, a body cut short) carry the JSON error.
    it.effect("F1: a request Node cannot parse gets a 4xx with a JSON error", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const auth = `authorization: Bearer ${TOKEN}\r\n`
        const cases: ReadonlyArray<readonly [string, number, Request["delivery"], string]> = [
          [
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n",
            400,
            { _tag: "Whole" },
            ""
          ],
          [
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n",
            400,
            { _tag: "Whole" },
            ""
          ],
          [
            `POST /v1/chat/completions HTTP/1.1\r\nx-big: ${"h".repeat(20000)}\r\n`,
            431,
            { _tag: "Whole" },
            ""
          ],
          [
            `POST /v1/chat/completions HTTP/1.1\r\n${auth}content-length: 2\r\n`,
            400,
            { _tag: "Whole" },
            "{}"
          ],
          [
            `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n${auth}expect: nothing\r\ncontent-length: 2\r\n`,
            417,
            { _tag: "Whole" },
            "{}"
          ],
          [
            `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n${auth}content-length: 100\r\n`,
            400,
            { _tag: "Truncated", keep: 10 },
            chatBody()
          ]
        ]
        for (const [head, status, delivery, body] of cases) {
          const r = yield* Effect.promise(() =>
            exchange(gw.port, { head: Buffer.from(head), body: Buffer.from(body), delivery }, BOUND_MS)
          )
          assert.strictEqual(r.status, status, describeResult(r))
          assert.isString(JSON.parse(r.body ?? bodyToClose(r)).error.message, describeResult(r))
        }
        yield* settles
        yield* stillServes
      })
    )

    // F6: a request pipelined after an answer with `connection: close` (a 413) is not left counted
    // in flight: its response never emits "close", its connection does.
    it.effect("F6: requests pipelined after a 413 do not stay counted in flight", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const request = (body: string, connection: string) =>
          `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: ${connection}\r\n` +
          `authorization: Bearer ${TOKEN}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
        const bytes = Buffer.from(
          request(chatBody(), "keep-alive") +
            request(chatBody({ pad: "p".repeat(BODY_LIMIT) }), "keep-alive") +
            request(chatBody(), "close")
        )
        const at = bytes.indexOf("\r\n\r\n") + 2
        const r = yield* Effect.promise(() =>
          exchange(
            gw.port,
            {
              head: bytes.subarray(0, at),
              body: bytes.subarray(at + 2),
              delivery: { _tag: "Whole" },
              expect: 3
            },
            BOUND_MS
          )
        )
        assert.deepStrictEqual(
          answers(r.raw).map((a) => a.status),
          [200, 413]
        )
        yield* settles
      })
    )

    // F2 (issue 13 item 7): the upstream's 400 counts as the key's failure in /status and /metrics.
    it.effect("F2: a caller's 400 is not counted against the key in /status or /metrics", () =>
      Effect.gen(function* () {
        const { sim } = yield* Fixture
        const gw = yield* Gateway.make(yield* configFor(sim, {}, ["k1"]))
        const bad = yield* post(
          `${gw.url}/v1/chat/completions`,
          JSON.stringify({ model: MODEL, messages: [] })
        )
        assert.strictEqual(bad.status, 400)
        const key = (yield* gw.status).keys[0]!
        assert.strictEqual(key.failures, 0)
        assert.strictEqual(key.errorRate, 0)
        assert.deepStrictEqual(key.errors, {})
        const metrics = (yield* gw.metrics).split("\n").filter((l) => !l.startsWith("#"))
        assert.deepStrictEqual(
          metrics.filter((l) => l.includes('key="k1"') && /BadRequest/.test(l)),
          []
        )
        // Its own metric, with no key label (the name is the fixer's choice).
        assert.isTrue(
          metrics.some((l) => !l.includes("key=") && /bad_?request|caller|client_error/i.test(l)),
          "a metric for callers' bad requests"
        )
      }).pipe(Effect.scoped)
    )

    // F3 (issue 13 item 10): the auth scheme is case-insensitive (RFC 9110 section 11.1).
    it.effect("F3: `bearer <token>` in lower case is accepted", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        for (const authorization of [`bearer ${TOKEN}`, `BEARER ${TOKEN}`]) {
          const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody(), { authorization })
          assert.strictEqual(r.status, 200, `${authorization.slice(0, 6)}: ${r.text}`)
        }
      })
    )

    // F4 (issue 13 item 10): HEAD on /healthz was a 404.
    it.effect("F4: `HEAD /healthz` answers 200 with no body", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const r = yield* Effect.promise(() =>
          fetch(`${gw.url}/healthz`, { method: "HEAD" }).then(async (r) => ({
            status: r.status,
            text: await r.text()
          }))
        )
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.text, "")
      })
    )

    // F5 (issue 13 item 10): a known path with the wrong method was a 404 with no `Allow`.
    it.effect("F5: a known path with the wrong method is a 405 with `Allow`", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const cases: ReadonlyArray<readonly [string, string, string]> = [
          ["GET", "/v1/chat/completions", "POST"],
          ["PUT", "/api/v1/chat/completions", "POST"],
          ["POST", "/v1/models", "GET"],
          ["DELETE", "/healthz", "GET"],
          ["POST", "/status", "GET"]
        ]
        for (const [method, path, allow] of cases) {
          const r = yield* Effect.promise(() =>
            fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } }).then(
              async (res) => ({ status: res.status, allow: res.headers.get("allow"), text: await res.text() })
            )
          )
          assert.strictEqual(r.status, 405, `${method} ${path}`)
          assert.include(r.allow ?? "", allow, `${method} ${path}`)
          assert.isString(JSON.parse(r.text).error.message)
        }
      })
    )
  }
)
