/**
 * What the gateway's property test throws at it: fast-check arbitraries for requests (well-formed
 * HTTP with hostile content, pipelined requests, bytes that are not HTTP), as {@link Plan}s for the
 * raw client in `RawHttp.ts`.
 */
import fc from "fast-check"
import { chatBody, TOKEN } from "./GatewaySupport.js"
import type { Delivery, Plan } from "./RawHttp.js"

/** The gateway's `bodyLimitBytes` in the test: small, so that oversized bodies are cheap. */
export const BODY_LIMIT = 4096
export const MODEL = "openai/gpt-4o-mini"

// --- Arbitraries: well-formed HTTP with hostile content ---------------------------------------

export const CHAT = ["/v1/chat/completions", "/api/v1/chat/completions"]
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

export interface Request {
  readonly method: string
  readonly path: string
  readonly auth: ReadonlyArray<string>
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  readonly framing: "length" | "chunked" | "huge-length" | "none"
  readonly delivery: Delivery
}

export const requestArb: fc.Arbitrary<Request> = fc.record({
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

export const planOf = (r: Request, keepAlive = false): Plan => {
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
export const pipelineArb: fc.Arbitrary<{ readonly requests: ReadonlyArray<Request>; readonly plan: Plan }> =
  fc
    .array(
      // Bodies over the limit too: a 413 closes the connection, and the requests pipelined after
      // it must not stay counted in flight (F6). No `huge-length`: a declared length the body
      // does not have swallows the requests after it as body.
      requestArb.filter((r) => r.method !== "HEAD" && r.framing !== "huge-length"),
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
export const protectedRoute = (r: Request) =>
  (r.method === "POST" && CHAT.includes(r.path)) ||
  (r.method === "GET" && r.path.split("?")[0]!.endsWith("/v1/models"))
/** The scheme in any case (RFC 9110), the token exactly. */
export const hasToken = (r: Request) =>
  new RegExp(`^[Bb][Ee][Aa][Rr][Ee][Rr] +${TOKEN}$`).test((r.auth[0] ?? "").trim())

// --- Arbitraries: bytes that are not valid HTTP -----------------------------------------------

export const malformedArb: fc.Arbitrary<Plan> = fc
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
