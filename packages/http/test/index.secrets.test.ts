/**
 * No secret in any error message, log line or metric, even when the upstream echoes the key back.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Monitor } from "@or-balancer/core"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Metric, Stream } from "effect"
import { BalancedHttpClient, OpenRouterClient } from "../src/index.js"
import { balancerLayer, clientLayer, json, makeKeys, secretOf, serve } from "./support.js"
import { NodeHttpClient } from "@effect/platform-node"

const request = { model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }

describe("secrets", () => {
  it.live("never appear in errors, logs or metrics", () =>
    Effect.gen(function* () {
      // A hostile upstream: every answer quotes the Authorization header it got.
      const server = yield* serve((req, res, n) => {
        const auth = req.authorization ?? ""
        if (req.path === "/key") return json(res, 401, { error: { code: 401, message: `bad key ${auth}` } })
        if (req.body.includes('"stream":true')) {
          res.writeHead(200, { "content-type": "text/event-stream" })
          res.write(`data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n`)
          res.end(
            `data: {"error":{"code":500,"message":"died holding ${auth}"},"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}\n\n`
          )
          return
        }
        switch (n % 4) {
          case 0:
            return json(res, 401, { error: { code: 401, message: `key ${auth} is disabled` } })
          case 1:
            return json(res, 500, `Internal error for ${auth}`)
          case 2:
            return json(
              res,
              429,
              { error: { code: 429, message: `slow down ${auth}` } },
              { "retry-after": "0" }
            )
          default:
            return json(res, 200, `{"id": "${auth}", broken`)
        }
      })
      const keys = makeKeys(["k1", "k2", "k3"])
      const secrets = keys.map((k) => secretOf(k.id))
      const lines: Array<string> = []
      const capture = Logger.make(({ annotations, cause, logLevel, message, spans }) => {
        lines.push(
          [
            logLevel.label,
            JSON.stringify(message),
            Cause.pretty(cause),
            JSON.stringify([...annotations]),
            String(spans)
          ].join(" ")
        )
      })
      const rendered: Array<string> = []
      const render = (exit: Exit.Exit<unknown, unknown>) => {
        if (Exit.isFailure(exit)) {
          const error = Cause.squash(exit.cause)
          rendered.push(
            String(error),
            JSON.stringify(error),
            Cause.pretty(exit.cause),
            (error as Error).message ?? ""
          )
        }
        return Effect.logError("request failed", exit)
      }

      yield* Effect.gen(function* () {
        const client = yield* OpenRouterClient.OpenRouterClient
        for (let i = 0; i < 4; i++) yield* Effect.exit(client.chat(request)).pipe(Effect.flatMap(render))
        yield* Effect.exit(Stream.runDrain(client.chatStream(request))).pipe(Effect.flatMap(render))
        yield* Effect.exit(client.keyInfo(keys[0]!)).pipe(Effect.flatMap(render))
        // Nothing listens on port 1: a transport failure.
        yield* Effect.exit(
          client.chatWith({ ...keys[0]!, baseUrl: "http://127.0.0.1:1/api/v1" }, request)
        ).pipe(Effect.flatMap(render))
        // The balanced HttpClient's own failures.
        const http = yield* HttpClient.HttpClient
        yield* Effect.exit(
          http.execute(
            HttpClientRequest.post("http://127.0.0.1:1/api/v1/chat/completions").pipe(
              HttpClientRequest.bodyUnsafeJson(request)
            )
          )
        ).pipe(Effect.flatMap(render))
        const stats = yield* Monitor.Monitor.pipe(Effect.flatMap((m) => m.stats))
        rendered.push(JSON.stringify(stats))
        rendered.push(JSON.stringify(yield* Metric.snapshot))
      }).pipe(
        Effect.provide(
          Layer.mergeAll(
            clientLayer(keys, server.url),
            BalancedHttpClient.layer().pipe(
              Layer.provide(balancerLayer(keys)),
              Layer.provide(NodeHttpClient.layerUndici)
            )
          )
        ),
        Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )

      // The hostile answers did arrive with the secrets in them, so the checks below can fail.
      expect(server.seen.length).toBeGreaterThan(6)
      expect(rendered.length).toBeGreaterThan(20)
      expect(lines.length).toBeGreaterThan(6)
      const everything = [...rendered, ...lines].join("\n")
      expect(everything).toContain("k1")
      for (const secret of secrets) {
        expect(everything).not.toContain(secret)
        // Not even the part after the prefix.
        expect(everything).not.toContain(secret.slice("sk-or-v1-".length))
      }
    }).pipe(Effect.scoped)
  )
})
