/**
 * Test support: keys, a round-robin KeySelector that records every report and marks keys dead on
 * an ejecting error, and a scripted HTTP server on 127.0.0.1 (port 0).
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Balancer, Key, KeyPool, KeySelector, Monitor, StateStore, UpstreamError } from "@or-balancer/core"
import { OpenRouterClient } from "../src/index.js"
import { Clock, Effect, Layer, Redacted, Ref, Schedule } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export const secretOf = (id: string) => `sk-or-v1-${id}${"0123456789abcdef".repeat(4)}`

export const makeKeys = (ids: ReadonlyArray<string>) =>
  ids.map((id) => Key.make({ id, secret: Redacted.make(secretOf(id)) }))

export interface Report {
  readonly key: string
  readonly tag: "Success" | "Failure" | "Cancelled"
  readonly error?: string
  readonly cost?: number | undefined
}

export class Recorder extends Effect.Service<Recorder>()("test/Recorder", {
  effect: Effect.gen(function* () {
    const reports = yield* Ref.make<ReadonlyArray<Report>>([])
    const dead = yield* Ref.make<ReadonlySet<string>>(new Set())
    return { reports, dead }
  })
}) {}

/** Round robin over candidates; a key reported 401/402 is ineligible from then on ("marked exhausted"). */
export const RoundRobin = Layer.effect(
  KeySelector.KeySelector,
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const recorder = yield* Recorder
    const cursor = yield* Ref.make(0)
    return KeySelector.make((request) =>
      Effect.gen(function* () {
        const keys = yield* pool.get
        const dead = yield* Ref.get(recorder.dead)
        const gated = KeySelector.withGate(request, (k) =>
          dead.has(k.id) ? { reason: "credit" as const } : undefined
        )
        const c = KeySelector.candidates(gated, keys)
        if (c.length === 0)
          return yield* Effect.fail(KeySelector.explain(gated, keys, yield* Clock.currentTimeMillis))
        const n = yield* Ref.getAndUpdate(cursor, (i) => i + 1)
        const key = c[n % c.length]!
        return KeySelector.lease(key, (outcome) =>
          Effect.gen(function* () {
            const report: Report =
              outcome._tag === "Success"
                ? { key: key.id, tag: "Success", cost: outcome.cost }
                : outcome._tag === "Failure"
                  ? { key: key.id, tag: "Failure", error: outcome.error._tag }
                  : { key: key.id, tag: "Cancelled" }
            yield* Ref.update(recorder.reports, (r) => [...r, report])
            if (outcome._tag === "Failure" && UpstreamError.disposition(outcome.error) === "eject") {
              yield* Ref.update(recorder.dead, (d) => new Set([...d, key.id]))
            }
          })
        )
      })
    )
  })
)

/** Core services and a Balancer over RoundRobin; failing over is immediate, reuse has no backoff. */
export const balancerLayer = (keys: ReadonlyArray<Key.Key>, options: Balancer.Options = {}) =>
  Balancer.layer({ backoff: Schedule.forever, ...options }).pipe(
    Layer.provideMerge(RoundRobin),
    Layer.provideMerge(
      Layer.mergeAll(KeyPool.layer(keys), Monitor.layer, StateStore.layerMemory, Recorder.Default)
    )
  )

/** The OpenRouter client at `baseUrl`, balanced over `keys`, on undici. */
export const clientLayer = (
  keys: ReadonlyArray<Key.Key>,
  baseUrl: string,
  options: Balancer.Options = {},
  config: Parameters<typeof OpenRouterClient.layerClientConfig>[0] = {}
) =>
  OpenRouterClient.layer.pipe(
    Layer.provideMerge(balancerLayer(keys, options)),
    Layer.provideMerge(NodeHttpClient.layerUndici),
    Layer.provide(OpenRouterClient.layerClientConfig({ baseUrl, ...config }))
  )

export interface Seen {
  readonly method: string
  readonly path: string
  /** Which test key sent it (by secret), or the raw header when it is not one of ours. */
  readonly key: string | undefined
  readonly authorization: string | undefined
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

export type Handler = (req: Seen, res: http.ServerResponse, n: number) => void | Promise<void>

export interface TestServer {
  readonly url: string
  readonly seen: Array<Seen>
}

const keyOfAuth = (auth: string | undefined): string | undefined => {
  const m = /^Bearer sk-or-v1-(\w+?)0123456789abcdef/.exec(auth ?? "")
  return m?.[1]
}

/** A scripted server on 127.0.0.1; `url` is its `/api/v1` base. Closed with the scope. */
export const serve = (handler: Handler) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; test: TestServer }>((resume) => {
      const seen: Array<Seen> = []
      const server = http.createServer((req, res) => {
        const parts: Array<Buffer> = []
        req.on("data", (c: Buffer) => parts.push(c))
        req.on("end", () => {
          const auth = req.headers.authorization
          const s: Seen = {
            method: req.method ?? "",
            path: (req.url ?? "").replace(/^\/api\/v1/, ""),
            key: keyOfAuth(auth),
            authorization: auth,
            headers: req.headers,
            body: Buffer.concat(parts).toString("utf8")
          }
          seen.push(s)
          void Promise.resolve(handler(s, res, seen.length)).catch(() => res.destroy())
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ server, test: { url: `http://127.0.0.1:${port}/api/v1`, seen } }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ test }) => test))

export const json = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {}
) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(typeof body === "string" ? body : JSON.stringify(body))
}

export const completion = (content: string, cost = 0.001, extra: Record<string, unknown> = {}) => ({
  id: "gen-1",
  object: "chat.completion",
  created: 1,
  model: "openai/gpt-4o-mini",
  provider: "OpenAI",
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
  usage: {
    prompt_tokens: 3,
    completion_tokens: 2,
    total_tokens: 5,
    cost,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0 }
  },
  ...extra
})

export const errorBody = (code: number, message: string, errorType?: string) => ({
  error: { code, message, ...(errorType === undefined ? {} : { metadata: { error_type: errorType } }) }
})

export const chunk = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    id: "gen-s",
    object: "chat.completion.chunk",
    created: 1,
    model: "openai/gpt-4o-mini",
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
    ...extra
  })

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Writes pieces with a real pause between them, so they reach the client as separate reads. */
export const writeSlowly = async (res: http.ServerResponse, pieces: ReadonlyArray<string>, pause = 3) => {
  for (const p of pieces) {
    res.write(p)
    await sleep(pause)
  }
}
