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
import { answers, bodyToClose, exchange, type Delivery, type Plan, type Result } from "./RawHttp.js"

const SEED = Number(process.env.FUZZ_SEED ?? 20261206)
const BODY_LIMIT = 4096
/** An answer or a close must come within this, slow bodies included. */
const BOUND_MS = 8000
const MODEL = "openai/gpt-4o-mini"

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

// --- Arbitraries: well-formed HTTP with hostile content ---------------------------------------

const CHAT = ["/v1/chat/completions", "/api/v1/chat/completions"]
const KNOWN = [...CHAT, "/v1/models", "/api/v1/models", "/healthz", "/status", "/metrics", "/dashboard"]

const pathArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...CHAT) },
  { weight: 2, arbitrary: fc.constantFrom(...KNOWN) },
  fc.tuple(fc.constantFrom(...KNOWN), fc.webQueryParameters()).map(([p, q]) => `${p}?${q}`),
  fc.constantFrom(
    "/v1/../v1/chat/completions",
    "/../../etc/passwd",
    "/v1/chat/completions%00",
    "/%00",
    "/dashboard/assets/../../package.json",
    "/dashboard/assets/%2e%2e/%2e%2e/package.json",
    "/v1/chat/completions/",
    "//v1/chat/completions",
    "/V1/CHAT/COMPLETIONS",
    "*",
    "http://127.0.0.1/v1/chat/completions",
    "/v1/models?%ZZ=%",
    "/v1/models?a=1&a=2&%00=%00"
  ),
  fc.webPath().map((p) => (p.startsWith("/") ? p : `/${p}`)),
  fc.string({ unit: "grapheme", maxLength: 20 }).map((s) => `/v1/${encodeURIComponent(s)}`),
  // Long, but head and headers together stay under Node's 16 KiB header limit (F1 covers past it).
  fc.integer({ min: 1000, max: 4000 }).map((n) => `/v1/${"a".repeat(n)}`)
)

const methodArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant("POST") },
  { weight: 3, arbitrary: fc.constant("GET") },
  fc.constantFrom("HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")
)

/** Accepted forms first (weighted up, so most requests reach the body's checks), then odd ones. */
const authArb: fc.Arbitrary<ReadonlyArray<string>> = fc.oneof(
  { weight: 10, arbitrary: fc.constant([`Bearer ${TOKEN}`]) },
  fc.constantFrom(
    [`Bearer  ${TOKEN}`],
    [`Bearer ${TOKEN} `],
    [`Bearer ${TOKEN}`, "Bearer wrong"],
    [],
    ["Bearer"],
    ["Bearer "],
    ["bearer x"],
    [`Bearer ${TOKEN}junk`],
    [`Bearer ${TOKEN} junk`],
    [`Basic ${Buffer.from(`u:${TOKEN}`).toString("base64")}`],
    [`Token ${TOKEN}`],
    ["Bearer x"]
  ),
  fc.string({ maxLength: 60 }).map((s) => [s.replace(/[\r\n\0]/g, "")])
)

/** A header value Node accepts: visible ASCII, spaces and tabs inside, latin-1 obs-text. */
const valueArb = fc
  .oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: "binary", maxLength: 40 }).map((s) => Buffer.from(s, "utf8").toString("latin1")),
    fc.integer({ min: 100, max: 1500 }).map((n) => "v".repeat(n))
  )
  .map((s) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, "").trim())

const nameArb = fc.oneof(
  fc.constantFrom("x-title", "http-referer", "accept", "content-type", "cookie", "x-forwarded-for", "expect"),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/)
)

const extraHeadersArb = fc.array(fc.tuple(nameArb, valueArb), { maxLength: 6 }).map((hs) =>
  // `expect` other than 100-continue is answered 417 by Node itself, with no JSON: kept out here.
  hs.filter(([n]) => n !== "expect")
)

const jsonValueArb = fc.jsonValue({ maxDepth: 3 })

/** An object that looks like a chat request, each field right, missing or wrong. */
const chatLikeArb: fc.Arbitrary<unknown> = fc.record(
  {
    model: fc.oneof(
      { weight: 4, arbitrary: fc.constant(MODEL) },
      fc.constantFrom("", "nope/nope", "openai/gpt-4o-mini\u0000", "ü/模型"),
      fc.integer({ min: 100, max: 3000 }).map((n) => "m".repeat(n)),
      jsonValueArb
    ),
    models: fc.oneof(fc.constant([MODEL]), fc.array(jsonValueArb, { maxLength: 3 })),
    messages: fc.oneof(
      { weight: 4, arbitrary: fc.constant([{ role: "user", content: "hello" }]) },
      fc.constant([]),
      fc.array(jsonValueArb, { maxLength: 3 }),
      jsonValueArb
    ),
    stream: fc.oneof(fc.boolean(), jsonValueArb),
    max_tokens: fc.oneof(fc.integer({ min: -5, max: 20 }), jsonValueArb),
    session_id: jsonValueArb,
    extra: jsonValueArb
  },
  { requiredKeys: [] }
)

const bodyArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: chatLikeArb.map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 2, arbitrary: jsonValueArb.map((v) => Buffer.from(JSON.stringify(v))) },
  fc.string({ maxLength: 80 }).map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  fc
    .constantFrom("", "{", '{"model":', "null", "[]", "0", '"x"', '{"model":"a"}}')
    .map((s) => Buffer.from(s)),
  // Past the body limit: JSON that would be fine but for its size.
  fc
    .integer({ min: BODY_LIMIT + 1, max: 3 * BODY_LIMIT })
    .map((n) => Buffer.from(chatBody({ pad: "p".repeat(n) })))
)

const deliveryArb: fc.Arbitrary<Delivery> = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ _tag: "Whole" as const }) },
  fc.record({
    _tag: fc.constant("Slow" as const),
    pieces: fc.integer({ min: 2, max: 5 }),
    pauseMs: fc.integer({ min: 5, max: 60 })
  }),
  fc.record({ _tag: fc.constant("Truncated" as const), keep: fc.nat({ max: 50 }) }),
  fc.record({ _tag: fc.constant("AbortBody" as const), keep: fc.nat({ max: 50 }) }),
  fc.constant({ _tag: "AbortAnswer" as const })
)

/** How the body is framed: its real length, chunked, or a length larger than the limit. */
const framingArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant("length" as const) },
  { weight: 2, arbitrary: fc.constant("chunked" as const) },
  fc.constant("huge-length" as const),
  fc.constant("none" as const)
)

interface Request {
  readonly method: string
  readonly path: string
  readonly auth: ReadonlyArray<string>
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  readonly framing: "length" | "chunked" | "huge-length" | "none"
  readonly delivery: Delivery
}

const requestArb: fc.Arbitrary<Request> = fc.record({
  method: methodArb,
  path: pathArb,
  auth: authArb,
  headers: extraHeadersArb,
  body: bodyArb,
  framing: framingArb,
  delivery: deliveryArb
})

const chunked = (body: Buffer): Buffer => {
  const parts: Array<Buffer> = []
  for (let at = 0; at < body.length; at += 97) {
    const piece = body.subarray(at, at + 97)
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"))
  }
  parts.push(Buffer.from("0\r\n\r\n"))
  return Buffer.concat(parts)
}

const planOf = (r: Request, keepAlive = false): Plan => {
  const lines = [
    `${r.method} ${r.path} HTTP/1.1`,
    "host: 127.0.0.1",
    keepAlive ? "connection: keep-alive" : "connection: close"
  ]
  for (const a of r.auth) lines.push(`authorization: ${a}`)
  for (const [n, v] of r.headers) lines.push(`${n}: ${v}`)
  let body = r.body
  switch (r.framing) {
    case "length":
      lines.push(`content-length: ${body.length}`)
      break
    case "huge-length":
      lines.push(`content-length: ${BODY_LIMIT * 10}`)
      break
    case "chunked":
      lines.push("transfer-encoding: chunked")
      body = chunked(body)
      break
    case "none":
      body = Buffer.alloc(0)
  }
  return { head: Buffer.from(lines.map((l) => `${l}\r\n`).join(""), "latin1"), body, delivery: r.delivery }
}

/**
 * Several requests pipelined on one keep-alive connection, a known-good chat last. Only requests
 * that are answered whole fit here (no aborts, no HEAD, whose answer has no body to delimit).
 */
const pipelineArb: fc.Arbitrary<{ readonly requests: ReadonlyArray<Request>; readonly plan: Plan }> = fc
  .array(
    // Nothing over the body limit: a 413 (answered with `connection: close`) leaks the count
    // of the requests pipelined after it (F6, its own test below).
    requestArb.filter(
      (r) => r.method !== "HEAD" && r.framing !== "huge-length" && r.body.length <= BODY_LIMIT
    ),
    { minLength: 1, maxLength: 4 }
  )
  .map((rs) => {
    const good: Request = {
      method: "POST",
      path: "/v1/chat/completions",
      auth: [`Bearer ${TOKEN}`],
      headers: [],
      body: Buffer.from(chatBody()),
      framing: "length",
      delivery: { _tag: "Whole" }
    }
    const requests = [...rs.map((r) => ({ ...r, delivery: { _tag: "Whole" } as const })), good]
    const bytes = requests.map((r, i) => {
      const p = planOf(r, i < requests.length - 1)
      return Buffer.concat([p.head, Buffer.from("\r\n"), p.body])
    })
    const first = planOf(requests[0]!, true)
    const plan: Plan = {
      head: first.head,
      body: Buffer.concat([first.body, ...bytes.slice(1)]),
      delivery: { _tag: "Whole" },
      expect: requests.length
    }
    return { requests, plan }
  })

/** Whether a request on a protected route carries the gateway token in an accepted form. */
const protectedRoute = (r: Request) =>
  (r.method === "POST" && CHAT.includes(r.path)) ||
  (r.method === "GET" && r.path.split("?")[0]!.endsWith("/v1/models"))
const hasToken = (r: Request) => new RegExp(`^Bearer +${TOKEN}$`).test((r.auth[0] ?? "").trim())

// --- Arbitraries: bytes that are not valid HTTP -----------------------------------------------

const malformedArb: fc.Arbitrary<Plan> = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(
        "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: abc\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: -1\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 1, 2\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: gzip\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked, chunked\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nbad header line\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nx-a : b\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nx-a: b\0c\r\n",
        "POST /v1/chat/completions HTTP/1.1\nhost: x\n",
        "FOO /v1/chat/completions HTTP/1.1\r\n",
        "POST /v1/chat/completions HTTP/2.0\r\n",
        "POST /v1/ch at/completions HTTP/1.1\r\n",
        "POST /v1/\u00fc\u6a21 HTTP/1.1\r\n",
        "GET /healthz HTTP/1.1\r\nexpect: nothing\r\n",
        `POST /v1/chat/completions HTTP/1.1\r\nx-big: ${"h".repeat(20000)}\r\n`,
        "\r\n\r\n",
        ""
      ),
      fc.string({ unit: "binary", maxLength: 120 })
    ),
    fc.uint8Array({ maxLength: 64 })
  )
  .map(([head, tail]) => ({
    head: Buffer.from(`${head}authorization: Bearer ${TOKEN}\r\n`, "utf8"),
    body: Buffer.from(tail),
    delivery: { _tag: "Whole" }
  }))

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
  // A body cut short by the client's half-close is answered by Node's parser, not the gateway (F1).
  if (req.delivery._tag === "Truncated") return
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

    // F1: Node's own parse-error answers (400, 431) reach the caller with no JSON error body.
    it.effect.skip("F1: a request Node cannot parse gets a 4xx with a JSON error", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const heads = [
          "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: abc\r\n",
          "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n",
          `POST /v1/chat/completions HTTP/1.1\r\nx-big: ${"h".repeat(20000)}\r\n`
        ]
        for (const head of heads) {
          const r = yield* Effect.promise(() =>
            exchange(
              gw.port,
              { head: Buffer.from(head), body: Buffer.alloc(0), delivery: { _tag: "Whole" } },
              BOUND_MS
            )
          )
          assert.isTrue(r.status !== undefined && r.status >= 400 && r.status < 500, describeResult(r))
          assert.isString(JSON.parse(r.body ?? bodyToClose(r)).error.message, describeResult(r))
        }
      })
    )

    // F6: a request pipelined after an answer with `connection: close` (a 413) stays counted in
    // flight forever: its response never emits "close", which is what makes the count go down.
    it.effect.skip("F6: requests pipelined after a 413 do not stay counted in flight", () =>
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
    it.effect.skip("F2: a caller's 400 is not counted against the key in /status or /metrics", () =>
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
    it.effect.skip("F3: `bearer <token>` in lower case is accepted", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        for (const authorization of [`bearer ${TOKEN}`, `BEARER ${TOKEN}`]) {
          const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody(), { authorization })
          assert.strictEqual(r.status, 200, `${authorization.slice(0, 6)}: ${r.text}`)
        }
      })
    )

    // F4 (issue 13 item 10): HEAD on /healthz is a 404.
    it.effect.skip("F4: `HEAD /healthz` answers 200 with no body", () =>
      Effect.gen(function* () {
        const { gw } = yield* Fixture
        const r = yield* Effect.promise(() => fetch(`${gw.url}/healthz`, { method: "HEAD" }))
        assert.strictEqual(r.status, 200)
      })
    )

    // F5 (issue 13 item 10): a known path with the wrong method is a 404 with no `Allow`.
    it.effect.skip("F5: a known path with the wrong method is a 405 with `Allow`", () =>
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
