/**
 * An "evil upstream": a tiny node:http server on 127.0.0.1 that answers each chat with the next
 * scripted misbehaviour (then normally), and a gateway with one key in front of it. Each mode
 * reproduces one way an upstream can leak a key or break an answer.
 */
import * as Effect from "effect/Effect"
import * as http from "node:http"
import * as Gateway from "../src/Gateway.js"
import { oneKeyConfig, TOKEN } from "./GatewaySupport.js"

export const SECRET = "sk-or-v1-evil0123456789abcdef0123456789abcdef0123456789abcdef01234567"
/** The part of the secret after its well-known prefix: never to be seen by a client. */
export const SECRET_BODY = SECRET.slice("sk-or-v1-".length)

export type Mode =
  /** 401 JSON echoing the Authorization header it got. */
  | "echo-401-json"
  /** 401 plain text echoing it. */
  | "echo-401-text"
  /** 401 JSON echoing it URL-encoded (and once more with every `-` encoded). */
  | "echo-401-urlencoded"
  /** A good 200 carrying the key in response headers (plain, Bearer, URL-encoded). */
  | "key-in-header"
  /**
   * A good 200 (JSON, or a stream when asked) whose head names each header once, in mixed case:
   * the key in `X-Echo-Key`, its own `X-Request-Id`, and `X-Custom: v`.
   */
  | "key-in-header-once"
  /** A good 200 carrying its account's window (`X-RateLimit-*`, names in mixed case): 7 a minute. */
  | "ratelimit-headers"
  /** A good 200 stream whose events echo the key, split across writes at awkward points. */
  | "stream-split-key"
  /** A 200 text/html page. */
  | "html"
  /** A 200 JSON body that is complete as HTTP but cut short as JSON. */
  | "truncated-json"
  /** A 200 JSON body whose connection breaks before its declared length. */
  | "cut"
  /** A 200 stream whose first (and only) event is an error. */
  | "stream-first-error"
  /** A 200 stream sending 100 KB of keep-alive comments before its first event. */
  | "long-keepalives"
  /** The connection reset before any byte. */
  | "reset"
  /** OpenRouter's key problems: a disabled key, a key at its limit (402 and the 403 form). */
  | "401"
  | "402"
  | "403-key-limit"
  /** A 402 for too much spend in flight: a short wait, but a 402 all the same. */
  | "402-in-flight"
  /** A 429 asking the client to come back in 11 days. */
  | "429-forever"
  | "ok"

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const completion = JSON.stringify({
  id: "gen-ok",
  object: "chat.completion",
  model: "openai/gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "fine" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, cost: 0.0001 }
})

const event = (content: string) =>
  `data: ${JSON.stringify({ id: "gen-s", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content } }] })}\n\n`

const answer = async (
  log: Array<string>,
  mode: Mode,
  auth: string,
  stream: boolean,
  req: http.IncomingMessage,
  res: http.ServerResponse
) => {
  const json = { "content-type": "application/json" }
  switch (mode) {
    case "echo-401-json":
      res.writeHead(401, json)
      return res.end(JSON.stringify({ error: { code: 401, message: `Invalid API key: ${auth}` } }))
    case "echo-401-text":
      res.writeHead(401, { "content-type": "text/plain" })
      return res.end(`Invalid API key: ${auth}`)
    case "echo-401-urlencoded":
      res.writeHead(401, json)
      return res.end(
        JSON.stringify({
          error: {
            code: 401,
            message: `rejected auth=${encodeURIComponent(auth)} or ${auth.replace(/-/g, "%2D")}`
          }
        })
      )
    case "key-in-header":
      res.writeHead(200, {
        ...json,
        "x-echo-key": auth.slice("Bearer ".length),
        "x-echo-auth": auth,
        "x-echo-encoded": encodeURIComponent(auth),
        "set-cookie": [`k=${auth.slice("Bearer ".length)}`, "other=1"]
      })
      return res.end(completion)
    case "key-in-header-once": {
      const head = [
        "X-Echo-Key",
        auth.slice("Bearer ".length),
        "X-Request-Id",
        "upstream-id",
        "X-Custom",
        "v"
      ]
      if (stream) {
        res.writeHead(200, ["Content-Type", "text/event-stream", ...head])
        res.write(event("fine"))
        return res.end("data: [DONE]\n\n")
      }
      res.writeHead(200, [
        "Content-Type",
        "application/json",
        ...head,
        "Content-Length",
        String(Buffer.byteLength(completion))
      ])
      return res.end(completion)
    }
    case "ratelimit-headers":
      res.writeHead(200, [
        "Content-Type",
        "application/json",
        "X-RateLimit-Limit",
        "7",
        "X-RateLimit-Remaining",
        "6",
        "X-RateLimit-Reset",
        String(Date.now() + 60_000)
      ])
      return res.end(completion)
    case "stream-split-key": {
      res.writeHead(200, { "content-type": "text/event-stream" })
      const secret = auth.slice("Bearer ".length)
      // The first event split inside the key (read whole before anything is sent)...
      const first = event(`your key: ${secret}`)
      const at = first.indexOf(secret) + 12
      res.write(first.slice(0, at))
      await sleep(15)
      res.write(first.slice(at))
      await sleep(15)
      // ...later ones split inside the prefix, right after it, and in the URL-encoded form.
      for (const [text, cut] of [
        [`again ${auth}`, "sk-o"],
        [`and ${secret}`, "sk-or-v1-"],
        [`encoded ${encodeURIComponent(auth)}`, "Bearer%20sk-or-v"]
      ] as const) {
        const e = event(text)
        const i = e.indexOf(cut) + cut.length
        res.write(e.slice(0, i))
        await sleep(15)
        res.write(e.slice(i))
        await sleep(15)
      }
      res.write(
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { cost: 0.0002 } })}\n\n`
      )
      return res.end("data: [DONE]\n\n")
    }
    case "html":
      res.writeHead(200, { "content-type": "text/html" })
      return res.end("<html><body>upstream proxy error</body></html>")
    case "truncated-json":
      res.writeHead(200, json)
      return res.end('{"id":"gen-1","choices":[{"index":0,"mess')
    case "cut":
      res.writeHead(200, { ...json, "content-length": "500" })
      res.write('{"id":"gen-1","choices":[{"mess')
      await sleep(20)
      return res.socket?.destroy()
    case "stream-first-error":
      res.writeHead(200, { "content-type": "text/event-stream" })
      res.write(": OPENROUTER PROCESSING\n\n")
      return res.end(
        `data: ${JSON.stringify({
          error: {
            code: 502,
            message: "Provider returned error",
            metadata: { error_type: "provider_unavailable" }
          },
          choices: [{ index: 0, delta: { content: "" }, finish_reason: "error" }]
        })}\n\n`
      )
    case "long-keepalives": {
      res.writeHead(200, { "content-type": "text/event-stream" })
      for (let i = 0; i < 50; i++) {
        res.write(`: ${"x".repeat(2000)}\n\n`)
        await sleep(1)
      }
      await sleep(1000)
      log.push("first event sent")
      return res.end(`${event("fine")}data: [DONE]\n\n`)
    }
    case "reset":
      return req.socket.destroy()
    case "401":
      res.writeHead(401, json)
      return res.end(JSON.stringify({ error: { code: 401, message: "This API key is disabled" } }))
    case "402":
      res.writeHead(402, json)
      return res.end(
        JSON.stringify({
          error: {
            code: 402,
            message: "Key limit reached",
            metadata: { limit_source: "openrouter_key_limit" }
          }
        })
      )
    case "402-in-flight":
      res.writeHead(402, { ...json, "retry-after": "1" })
      return res.end(
        JSON.stringify({
          error: {
            code: 402,
            message: "Too much spend in flight",
            metadata: { limit_source: "openrouter_in_flight_budget" }
          }
        })
      )
    case "403-key-limit":
      res.writeHead(403, json)
      return res.end(JSON.stringify({ error: { code: 403, message: "Key limit exceeded" } }))
    case "429-forever":
      res.writeHead(429, { ...json, "retry-after": "999999" })
      return res.end(JSON.stringify({ error: { code: 429, message: "Rate limit exceeded" } }))
    case "ok":
      if (stream) {
        res.writeHead(200, { "content-type": "text/event-stream" })
        return res.end(`${event("fine")}data: [DONE]\n\n`)
      }
      res.writeHead(200, json)
      return res.end(completion)
  }
}

export interface Evil {
  readonly url: string
  /** Each request's Authorization, in order. */
  readonly seen: Array<string>
  /** What the upstream did when, for modes that say. */
  readonly log: Array<string>
}

/** The evil upstream; answers the scripted modes in order, then `ok`. Closed with the scope. */
export const evilUpstream = (modes: ReadonlyArray<Mode>) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; evil: Evil }>((resume) => {
      const script = [...modes]
      const seen: Array<string> = []
      const log: Array<string> = []
      const server = http.createServer((req, res) => {
        const body: Array<Buffer> = []
        req.on("data", (c: Buffer) => body.push(c))
        req.on("end", () => {
          const auth = req.headers.authorization ?? ""
          seen.push(auth)
          const stream = Buffer.concat(body).toString().includes('"stream":true')
          void answer(log, script.shift() ?? "ok", auth, stream, req, res).catch(() => res.destroy())
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({
            server,
            evil: { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v1`, seen, log }
          })
        )
      )
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ evil }) => evil))

/** A gateway with the one key `only` (holding `SECRET`) in front of `url`. */
export const gatewayOn = (
  url: string,
  maxAttempts = 2,
  strategy: ReadonlyArray<unknown> = [{ name: "round-robin" }]
) => Effect.flatMap(configOn(url, maxAttempts, strategy), Gateway.make)

/** {@link gatewayOn}'s config (for a reload). */
export const configOn = (
  url: string,
  maxAttempts = 2,
  strategy: ReadonlyArray<unknown> = [{ name: "round-robin" }]
) =>
  oneKeyConfig(url, SECRET, {
    strategy,
    retry: { maxAttempts, baseDelayMs: 5, maxDelayMs: 20, budget: false },
    deadlines: { keyWaitMs: 500, drainMs: 1000 }
  })

export interface Received {
  readonly status: number
  /** Every header, as `name: value` lines. */
  readonly headers: string
  readonly text: string
}

/** A chat through the gateway, everything the client received kept. */
export const chat = (gw: Gateway.Gateway, stream = false) =>
  Effect.promise(() =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "openai/gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
        stream
      })
    }).then(
      async (r): Promise<Received> => ({
        status: r.status,
        headers: [...r.headers].map(([k, v]) => `${k}: ${v}`).join("\n"),
        text: await r.text().catch((e: unknown) => `<body failed: ${String(e)}>`)
      }),
      (e: unknown): Received => ({ status: 0, headers: "", text: `<request failed: ${String(e)}>` })
    )
  )
