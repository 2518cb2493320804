/**
 * A table of OpenRouter answers (status, headers, body or SSE events) and the verdict each must
 * get, served by a tiny upstream on 127.0.0.1 that answers each chat with the fixture its request
 * names (`"fixture": "<name>"` in the body, passed through by every entry point).
 */
import * as Effect from "effect/Effect"
import * as http from "node:http"

export interface Fixture {
  readonly name: string
  readonly stream: boolean
  readonly status: number
  readonly headers: Record<string, string>
  /** A JSON or text body; for an SSE answer, its events' `data` (a string starting ":" is a comment). */
  readonly body: string | ReadonlyArray<string>
  /** `Success:<cost>` or the error's tag. */
  readonly verdict: string
}

const json = { "content-type": "application/json" }
const sse = { "content-type": "text/event-stream" }

const error = (code: number, message: string, metadata?: Record<string, unknown>) =>
  JSON.stringify({ error: { code, message, ...(metadata === undefined ? {} : { metadata }) } })

const completion = (cost?: number) =>
  JSON.stringify({
    id: "gen-f",
    object: "chat.completion",
    created: 1,
    model: "openai/gpt-4o-mini",
    choices: [{ index: 0, message: { role: "assistant", content: "fine" }, finish_reason: "stop" }],
    usage: {
      prompt_tokens: 1,
      completion_tokens: 1,
      total_tokens: 2,
      ...(cost === undefined ? {} : { cost })
    }
  })

const chunk = (content: string, extra: Record<string, unknown> = {}, finish: string | null = null) =>
  JSON.stringify({
    id: "gen-s",
    object: "chat.completion.chunk",
    created: 1,
    model: "openai/gpt-4o-mini",
    choices: [{ index: 0, delta: { content }, finish_reason: finish }],
    ...extra
  })

const usage = (cost: number) => ({ usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, cost } })

export const fixtures: ReadonlyArray<Fixture> = [
  {
    name: "ok",
    stream: false,
    status: 200,
    headers: json,
    body: completion(0.0042),
    verdict: "Success:0.0042"
  },
  { name: "ok-no-cost", stream: false, status: 200, headers: json, body: completion(), verdict: "Success:0" },
  {
    name: "model-not-found",
    stream: false,
    status: 400,
    headers: json,
    body: error(400, "no such model", { error_type: "model_not_found" }),
    verdict: "ModelNotFound"
  },
  {
    name: "bad-param",
    stream: false,
    status: 400,
    headers: json,
    body: error(400, "bad temperature"),
    verdict: "BadRequest"
  },
  {
    name: "401",
    stream: false,
    status: 401,
    headers: json,
    body: error(401, "User not found."),
    verdict: "Unauthorized"
  },
  {
    name: "402",
    stream: false,
    status: 402,
    headers: json,
    body: error(402, "Insufficient credits", { limit_source: "openrouter_key_limit" }),
    verdict: "InsufficientCredits"
  },
  {
    name: "402-account",
    stream: false,
    status: 402,
    headers: json,
    body: error(402, "Insufficient credits", { limit_source: "openrouter_credits" }),
    verdict: "InsufficientCredits"
  },
  {
    name: "402-in-flight",
    stream: false,
    status: 402,
    headers: { ...json, "retry-after": "1" },
    body: error(402, "Too much spend in flight", { limit_source: "openrouter_in_flight_budget" }),
    verdict: "RateLimited"
  },
  {
    name: "403-key-limit",
    stream: false,
    status: 403,
    headers: json,
    body: error(403, "Key limit exceeded"),
    verdict: "InsufficientCredits"
  },
  {
    name: "403-moderation",
    stream: false,
    status: 403,
    headers: json,
    body: error(403, "flagged", { error_type: "permission_denied" }),
    verdict: "BadRequest"
  },
  {
    name: "429-account",
    stream: false,
    status: 429,
    headers: { ...json, "x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "retry-after": "1" },
    body: error(429, "Rate limit exceeded"),
    verdict: "RateLimited"
  },
  {
    name: "429-provider",
    stream: false,
    status: 429,
    headers: json,
    body: error(429, "provider busy", { error_type: "rate_limit_exceeded" }),
    verdict: "RateLimited"
  },
  {
    name: "503",
    stream: false,
    status: 503,
    headers: json,
    body: error(503, "no provider"),
    verdict: "ServerError"
  },
  {
    name: "200-error-body",
    stream: false,
    status: 200,
    headers: json,
    body: error(502, "provider died"),
    verdict: "ServerError"
  },
  {
    name: "200-html",
    stream: false,
    status: 200,
    headers: { "content-type": "text/html" },
    body: "<html><body>upstream proxy error</body></html>",
    verdict: "InvalidResponse"
  },
  {
    name: "200-truncated",
    stream: false,
    status: 200,
    headers: json,
    body: '{"id":"gen-1","choices":[{"index":0,"mess',
    verdict: "InvalidResponse"
  },
  {
    name: "stream-ok",
    stream: true,
    status: 200,
    headers: sse,
    body: [": OPENROUTER PROCESSING", chunk("he"), chunk("llo", usage(0.003), "stop"), "[DONE]"],
    verdict: "Success:0.003"
  },
  {
    name: "stream-finish-reason-error",
    stream: true,
    status: 200,
    headers: sse,
    body: [
      chunk("he"),
      chunk("", { error: { code: 502, message: "provider died mid-answer" } }, "error"),
      "[DONE]"
    ],
    verdict: "ServerError"
  },
  {
    name: "stream-finish-reason-only",
    stream: true,
    status: 200,
    headers: sse,
    body: [chunk("he"), chunk("", {}, "error"), "[DONE]"],
    verdict: "ServerError"
  },
  {
    name: "stream-top-level-error",
    stream: true,
    status: 200,
    headers: sse,
    body: [
      chunk("he"),
      JSON.stringify({
        error: { code: 429, message: "slow down", metadata: { error_type: "rate_limit_exceeded" } }
      }),
      "[DONE]"
    ],
    verdict: "RateLimited"
  },
  {
    name: "stream-first-event-error",
    stream: true,
    status: 200,
    headers: sse,
    body: [
      ": OPENROUTER PROCESSING",
      chunk("", { error: { code: 503, message: "no provider available" } }, "error"),
      "[DONE]"
    ],
    verdict: "ServerError"
  },
  {
    name: "stream-error-status",
    stream: true,
    status: 401,
    headers: json,
    body: error(401, "User not found."),
    verdict: "Unauthorized"
  }
]

const write = (res: http.ServerResponse, f: Fixture) => {
  res.writeHead(f.status, f.headers)
  if (typeof f.body === "string") return res.end(f.body)
  for (const e of f.body) res.write(e.startsWith(":") ? `${e}\n\n` : `data: ${e}\n\n`)
  res.end()
}

/** The fixture upstream; `url` is its `/api/v1` base. Closed with the scope. */
export const serveFixtures = Effect.acquireRelease(
  Effect.async<{ server: http.Server; url: string }>((resume) => {
    const server = http.createServer((req, res) => {
      const parts: Array<Buffer> = []
      req.on("data", (c: Buffer) => parts.push(c))
      req.on("end", () => {
        let name = ""
        try {
          name = (JSON.parse(Buffer.concat(parts).toString("utf8")) as { fixture?: string }).fixture ?? ""
        } catch {
          // no fixture named: 404 below
        }
        const f = fixtures.find((x) => x.name === name)
        if (f === undefined) {
          res.writeHead(404, json)
          return res.end(error(404, `no fixture ${name}`))
        }
        write(res, f)
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(
        Effect.succeed({
          server,
          url: `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v1`
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
