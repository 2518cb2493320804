/**
 * Request logs and events on stdout (`log` in the config), the request id, and the trace context
 * passed upstream. The gateway runs in this process, so stdout is captured here; the simulator
 * records the headers that reached upstream.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import { chatBody, configFor, post, simKeys, TOKEN } from "./GatewaySupport.js"
import { captureStdout, eventsOf, lineFor, requestsOf, waitFor } from "./LogCapture.js"

const MODEL = "openai/gpt-4o-mini"
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/** A raw request, so headers fetch would refuse (a tab, a non-ASCII byte) can be sent. */
const rawPost = (url: string, body: string, headers: Record<string, string>) =>
  Effect.async<{ status: number; headers: http.IncomingHttpHeaders; text: string }>((resume) => {
    const req = http.request(url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers }
    })
    req.on("response", (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resume(
          Effect.succeed({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString("utf8")
          })
        )
      )
    })
    req.end(body)
  })

describe("Request logs", () => {
  it.scopedLive(
    "one line per request: id, client, model, route, the attempt's key, status and latency, cost; the id echoed and passed upstream with traceparent",
    () =>
      Effect.gen(function* () {
        const out = yield* captureStdout
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["a", "b"]) })
        const gw = yield* Gateway.make(yield* configFor(sim, { log: { requests: true } }))
        const url = `${gw.url}/v1/chat/completions`

        const r = yield* post(url, chatBody(), { "x-request-id": "client-req-42", traceparent: TRACEPARENT })
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.headers.get("x-request-id"), "client-req-42")
        const seen = (yield* sim.recentRequests).at(-1)!
        assert.strictEqual(seen.headers["x-request-id"], "client-req-42")
        assert.strictEqual(seen.headers.traceparent, TRACEPARENT)
        const line = yield* lineFor(out, "client-req-42")
        assert.strictEqual(line.level, "info")
        assert.strictEqual(line.client, "GW_TOKEN")
        assert.strictEqual(line.method, "POST")
        assert.strictEqual(line.route, "/v1/chat/completions")
        assert.strictEqual(line.model, MODEL)
        assert.strictEqual(line.status, 200)
        assert.strictEqual(line.outcome, "success")
        assert.strictEqual(line.stream, false)
        assert.isAbove(line.cost, 0)
        assert.isAtLeast(line.durationMs, 0)
        assert.isNotNaN(Date.parse(line.time))
        assert.deepStrictEqual(line.failover, [])
        assert.strictEqual(line.attempts.length, 1)
        const [attempt] = line.attempts
        assert.strictEqual(attempt.key, seen.key)
        assert.strictEqual(attempt.status, 200)
        assert.strictEqual(attempt.outcome, "success")
        assert.isAtLeast(attempt.latencyMs, 0)
        assert.isAtMost(attempt.latencyMs, line.durationMs)

        // No id sent: one is made, echoed, sent upstream and logged; each request its own.
        const ids: Array<string> = []
        for (let i = 0; i < 2; i++) {
          const g = yield* post(url, chatBody({ stream: true }))
          assert.strictEqual(g.status, 200)
          const id = g.headers.get("x-request-id")!
          assert.match(id, /^gw-[0-9a-f]{12}-[0-9a-z]+$/)
          assert.strictEqual((yield* sim.recentRequests).at(-1)!.headers["x-request-id"], id)
          const l = yield* lineFor(out, id)
          assert.strictEqual(l.stream, true)
          assert.isAbove(l.cost, 0)
          assert.strictEqual(l.attempts[0].outcome, "success")
          ids.push(id)
        }
        assert.notStrictEqual(ids[0], ids[1])

        // An id that is not printable ASCII or longer than 128 characters is replaced.
        for (const bad of ["x".repeat(129), "tab\tinside", "caf\u00e9"]) {
          const b = yield* rawPost(url, chatBody(), { "x-request-id": bad })
          assert.strictEqual(b.status, 200)
          assert.match(String(b.headers["x-request-id"]), /^gw-/)
        }
        const ok128 = "y".repeat(128)
        assert.strictEqual(
          (yield* rawPost(url, chatBody(), { "x-request-id": ok128 })).headers["x-request-id"],
          ok128
        )

        // The gateway's own answers carry the id and are logged too (no client for a bad token).
        const denied = yield* post(url, chatBody(), {
          authorization: "Bearer wrong",
          "x-request-id": "denied-1"
        })
        assert.strictEqual(denied.status, 401)
        assert.strictEqual(denied.headers.get("x-request-id"), "denied-1")
        const d = yield* lineFor(out, "denied-1")
        assert.strictEqual(d.level, "warn")
        assert.strictEqual(d.client, null)
        assert.deepStrictEqual(d.attempts, [])
        // Exactly one line per request.
        assert.strictEqual(requestsOf(out).filter((l) => l.id === "client-req-42").length, 1)
      })
  )

  it.scopedLive(
    "every answer has exactly one line with its status and reason: unknown route, wrong method, bad token, body too large, admin token; admin successes at debug only",
    () =>
      Effect.gen(function* () {
        const out = yield* captureStdout
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["a"]) })
        const gw = yield* Gateway.make(
          yield* configFor(sim, {
            log: { requests: true },
            bodyLimitBytes: 1000,
            admin: { protect: true }
          })
        )
        const send = (path: string, id: string, init: RequestInit = {}) =>
          Effect.promise(() =>
            fetch(`${gw.url}${path}`, {
              ...init,
              headers: { "x-request-id": id, ...(init.headers as Record<string, string>) }
            }).then(async (r) => ({
              status: r.status,
              id: r.headers.get("x-request-id"),
              text: await r.text()
            }))
          )
        const authed = { authorization: `Bearer ${TOKEN}` }
        const cases: Array<
          [id: string, answer: { status: number; id: string | null }, status: number, reason: string]
        > = [
          ["unknown-route", yield* send("/v1/nope", "unknown-route", { headers: authed }), 404, "not_found"],
          ["not-api", yield* send("/favicon.ico", "not-api"), 404, "not_found"],
          [
            "wrong-method",
            yield* send("/v1/chat/completions", "wrong-method", { headers: authed }),
            405,
            "method_not_allowed"
          ],
          [
            "bad-token",
            yield* send("/v1/chat/completions", "bad-token", {
              method: "POST",
              headers: { authorization: "Bearer wrong", "content-type": "application/json" },
              body: chatBody()
            }),
            401,
            "invalid_api_key"
          ],
          [
            "too-large",
            yield* send("/v1/chat/completions", "too-large", {
              method: "POST",
              headers: { ...authed, "content-type": "application/json" },
              body: chatBody({ padding: "x".repeat(2000) })
            }),
            413,
            "request_too_large"
          ],
          [
            "bad-json",
            yield* send("/v1/chat/completions", "bad-json", {
              method: "POST",
              headers: { ...authed, "content-type": "application/json" },
              body: "{"
            }),
            400,
            "invalid_json"
          ],
          ["admin-denied", yield* send("/status", "admin-denied"), 401, "invalid_api_key"]
        ]
        for (const [id, answer, status, reason] of cases) {
          assert.strictEqual(answer.status, status, id)
          assert.strictEqual(answer.id, id)
          const line = yield* lineFor(out, id)
          assert.strictEqual(line.status, status, id)
          assert.strictEqual(line.reason, reason, id)
          assert.strictEqual(line.level, "warn", id)
          assert.strictEqual(line.outcome, "error", id)
        }
        // A health check answered 200 has its line at debug level only (here: info, so none).
        assert.strictEqual((yield* send("/healthz", "health")).status, 200)
        const ok = yield* post(`${gw.url}/v1/chat/completions`, chatBody(), { "x-request-id": "ok-after" })
        assert.strictEqual(ok.status, 200)
        const okLine = yield* lineFor(out, "ok-after")
        assert.notProperty(okLine, "reason")
        assert.isUndefined(requestsOf(out).find((l) => l.id === "health"))
        // Exactly one line each.
        for (const [id] of cases) assert.strictEqual(requestsOf(out).filter((l) => l.id === id).length, 1, id)
      })
  )

  it.scopedLive(
    "a named client's requests are logged with its id, never its token, served or refused by its budget",
    () =>
      Effect.gen(function* () {
        const out = yield* captureStdout
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["a"]) })
        const clientToken = "team-a-secret-token-0123456789"
        const config = yield* GatewayConfig.decode({
          listen: { host: "127.0.0.1", port: 0 },
          baseUrl: sim.baseUrl,
          tokens: ["GW_TOKEN"],
          clients: [
            { id: "team-a", tokenEnv: "TEAM_A", budget: { usd: 0.001, period: "daily", reserveUsd: 0.001 } }
          ],
          keys: [{ id: "a", secretEnv: "KEY_A" }],
          log: { requests: true }
        }).pipe(
          Effect.withConfigProvider(
            ConfigProvider.fromMap(
              new Map([
                ["GW_TOKEN", TOKEN],
                ["TEAM_A", clientToken],
                ["KEY_A", Redacted.value(sim.keys[0]!.secret)]
              ])
            )
          )
        )
        const gw = yield* Gateway.make(config)
        const url = `${gw.url}/v1/chat/completions`
        const as = { authorization: `Bearer ${clientToken}` }
        assert.strictEqual((yield* post(url, chatBody(), { ...as, "x-request-id": "team-a-1" })).status, 200)
        assert.strictEqual((yield* post(url, chatBody(), { ...as, "x-request-id": "team-a-2" })).status, 429)
        assert.strictEqual((yield* post(url, chatBody(), { "x-request-id": "flat-1" })).status, 200)
        const served = yield* lineFor(out, "team-a-1")
        assert.strictEqual(served.client, "team-a")
        assert.isAbove(served.cost, 0)
        const refused = yield* lineFor(out, "team-a-2")
        assert.strictEqual(refused.client, "team-a")
        assert.strictEqual(refused.status, 429)
        assert.strictEqual((yield* lineFor(out, "flat-1")).client, "GW_TOKEN")
        assert.notInclude(out.raw.join(""), clientToken)
      })
  )

  it.scopedLive(
    "failover: each attempt's key, status, error and action; ejection, cooldown, trial and recovery as events",
    () =>
      Effect.gen(function* () {
        const out = yield* captureStdout
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["bad", "good"]) })
        yield* sim.setFaultScript("bad", ["500", "429"])
        const gw = yield* Gateway.make(
          yield* configFor(sim, {
            log: { requests: true },
            strategy: [
              { name: "health-aware", failureThreshold: 1, baseCooldownMs: 100 },
              { name: "round-robin" }
            ]
          })
        )
        const url = `${gw.url}/v1/chat/completions`
        const failedOver = (reason: string) =>
          Effect.gen(function* () {
            for (let i = 0; i < 10; i++) {
              const id = `fo-${reason}-${i}`
              assert.strictEqual((yield* post(url, chatBody(), { "x-request-id": id })).status, 200)
              const l = yield* lineFor(out, id)
              if (l.attempts.length === 2) return l
              yield* Effect.sleep(Duration.millis(30))
            }
            return assert.fail(`no request failed over (${reason})`)
          })
        const first = yield* failedOver("500")
        assert.deepStrictEqual(first.failover, ["ServerError"])
        assert.deepInclude(first.attempts[0], {
          key: "bad",
          status: 500,
          outcome: "failure",
          error: "ServerError",
          action: "retry-other"
        })
        assert.include(first.attempts[0].message, "Internal Server Error")
        assert.deepInclude(first.attempts[1], { key: "good", status: 200, outcome: "success" })
        assert.strictEqual(first.status, 200)
        const ejected = yield* waitFor(() => eventsOf(out, "key_ejected")[0], "key_ejected", out)
        assert.strictEqual(ejected.key, "bad")
        assert.strictEqual(ejected.reason, "ServerError")
        assert.strictEqual(ejected.level, "warn")
        // After its cooldown the key is tried once (half-open); its 429 cools it down again.
        yield* Effect.sleep(Duration.millis(150))
        const second = yield* failedOver("429")
        assert.deepStrictEqual(second.failover, ["RateLimited"])
        assert.strictEqual(second.attempts[0].status, 429)
        yield* waitFor(() => eventsOf(out, "key_trial").find((e) => e.key === "bad"), "key_trial", out)
        const cooldown = yield* waitFor(() => eventsOf(out, "cooldown")[0], "cooldown", out)
        assert.strictEqual(cooldown.scope, "key")
        assert.strictEqual(cooldown.key, "bad")
        assert.isAbove(cooldown.ms, 0)
        // The script is spent: the next trial succeeds and the key is back.
        for (let i = 0; i < 40 && eventsOf(out, "key_recovered").length === 0; i++) {
          yield* post(url, chatBody())
          yield* Effect.sleep(Duration.millis(50))
        }
        yield* waitFor(
          () => eventsOf(out, "key_recovered").find((e) => e.key === "bad"),
          "key_recovered",
          out
        )
      })
  )

  it.scopedLive(
    "levels and the switch: warn keeps failed requests; a reload turns lines off; reload and drain are events",
    () =>
      Effect.gen(function* () {
        const out = yield* captureStdout
        const sim = yield* Simulator.make({
          seed: 7,
          keys: simKeys(["gone"]).map((k) => ({ ...k, revoked: true }))
        })
        const gw = yield* Gateway.make(yield* configFor(sim, { log: { requests: true, level: "warn" } }))
        const url = `${gw.url}/v1/chat/completions`
        const failed = yield* post(url, chatBody(), { "x-request-id": "warn-1" })
        assert.strictEqual(failed.status, 503)
        const l = yield* lineFor(out, "warn-1")
        assert.strictEqual(l.level, "warn")
        assert.strictEqual(l.outcome, "error")
        assert.strictEqual(l.gaveUp, "AllAttemptsFailed: no-key")
        assert.deepInclude(l.attempts[0], {
          key: "gone",
          status: 401,
          error: "Unauthorized",
          action: "eject"
        })
        // A model no route serves is the caller's own 4xx: warn too. A good request is info: not logged.
        const sim2 = yield* Simulator.make({ seed: 8, keys: simKeys(["ok"], 8) })
        const gw2 = yield* Gateway.make(yield* configFor(sim2, { log: { requests: true, level: "warn" } }))
        assert.strictEqual(
          (yield* post(`${gw2.url}/v1/chat/completions`, chatBody(), { "x-request-id": "info-1" })).status,
          200
        )
        assert.strictEqual(
          (yield* post(`${gw2.url}/v1/chat/completions`, "{not json", { "x-request-id": "warn-2" })).status,
          400
        )
        yield* lineFor(out, "warn-2")
        assert.isUndefined(requestsOf(out).find((r) => r.id === "info-1"))

        // Reloaded with request lines off: the reload is an event, requests are not logged.
        yield* gw.reload(yield* configFor(sim, { log: { requests: false, level: "info" } }))
        const reload = yield* waitFor(() => eventsOf(out, "reload")[0], "reload", out)
        assert.strictEqual(reload.generation, 2)
        assert.deepStrictEqual(reload.keys, ["gone"])
        yield* post(url, chatBody(), { "x-request-id": "off-1" })
        yield* gw.drain()
        const end = yield* waitFor(() => eventsOf(out, "drain_end")[0], "drain_end", out)
        assert.strictEqual(end.cutOff, 0)
        assert.strictEqual(eventsOf(out, "drain_start").length, 1)
        assert.isUndefined(requestsOf(out).find((r) => r.id === "off-1"))
      })
  )
})
