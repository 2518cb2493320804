// The gateway's admin side and lifecycle: /metrics, /status, /healthz, reload, clients leaving, drain.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import {
  cancelledAndReleased,
  chatBody,
  configFor,
  openChat,
  post,
  secretsOf,
  setup,
  simKeys,
  TOKEN,
  waitUntil
} from "./GatewaySupport.js"

describe("Gateway admin", () => {
  it.scopedLive("/metrics and /status: per-key numbers, never a secret; /healthz", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["metrics-a", "metrics-b"], {
        keys: simKeys(["metrics-a", "metrics-b"]).map((k) =>
          k.label === "metrics-b" ? { ...k, faults: { script: ["500" as const] } } : k
        )
      })
      for (let i = 0; i < 4; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      const metrics = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      assert.match(metrics, /# TYPE or_balancer_requests_total counter/)
      assert.match(metrics, /or_balancer_requests_total\{key="metrics-a",outcome="success"\} \d+/)
      assert.match(metrics, /or_balancer_requests_total\{key="metrics-b",outcome="ServerError"\} 1/)
      assert.match(metrics, /or_balancer_request_latency_ms_bucket\{key="metrics-a",le="\+Inf"\} \d+/)
      assert.match(metrics, /or_balancer_in_flight\{key="metrics-a"\} 0/)
      const statusText = yield* Effect.promise(() => fetch(`${gw.url}/status`).then((r) => r.text()))
      const status = JSON.parse(statusText)
      assert.strictEqual(status.totals.successes, 4)
      assert.strictEqual(status.totals.failures, 1)
      const b = status.keys.find((k: { id: string }) => k.id === "metrics-b")
      assert.strictEqual(b.errors.ServerError, 1)
      assert.strictEqual(b.inFlight, 0)
      for (const secret of secretsOf(sim)) {
        assert.notInclude(metrics, secret)
        assert.notInclude(statusText, secret)
        assert.notInclude(metrics, secret.slice(-12))
      }
      const health = yield* Effect.promise(() => fetch(`${gw.url}/healthz`).then((r) => r.status))
      assert.strictEqual(health, 200)
    })
  )

  it.scopedLive("credit remaining and cooldowns appear in /metrics and /status once known", () =>
    Effect.gen(function* () {
      const labels = ["gauge-rich", "gauge-broken"]
      const { sim, gw } = yield* setup(
        labels,
        {
          keys: simKeys(labels).map((k) =>
            k.label === "gauge-broken"
              ? { ...k, limit: 9, faults: { script: ["500" as const], loop: true } }
              : { ...k, limit: 5 }
          )
        },
        {
          strategy: [
            { name: "health-aware", failureThreshold: 1, baseCooldownMs: 60_000 },
            { name: "credit-aware" }
          ]
        }
      )
      // The richer key is tried first, fails, is ejected; the other answers.
      for (let i = 0; i < 3; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      assert.isAtLeast((yield* sim.stats).keys["gauge-broken"]!.requests, 1)
      const metrics = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      const rich = /or_balancer_credit_remaining_usd\{key="gauge-rich"\} ([0-9.e-]+)/.exec(metrics)
      assert.isNotNull(rich, metrics)
      const richCredit = Number(rich![1])
      assert.isTrue(richCredit > 4 && richCredit < 5, `credit ${richCredit}`)
      assert.match(metrics, /or_balancer_cooldown\{key="gauge-broken"\} 1/)
      assert.match(metrics, /or_balancer_cooldown\{key="gauge-rich"\} 0/)
      const status = yield* gw.status
      const byId = new Map(status.keys.map((k) => [k.id, k]))
      assert.strictEqual(byId.get("gauge-broken")!.health, "ejected")
      assert.isNotNull(byId.get("gauge-broken")!.coolingUntil)
      assert.strictEqual(byId.get("gauge-rich")!.health, "healthy")
      assert.isNull(byId.get("gauge-rich")!.coolingUntil)
      assert.strictEqual(byId.get("gauge-rich")!.credit, richCredit)
      assert.strictEqual(byId.get("gauge-broken")!.credit, 9)
      assert.isTrue(byId.get("gauge-rich")!.creditTracked)
    })
  )

  it.scopedLive("without a credit strategy /status says credit is not tracked", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(["plain"])
      const key = (yield* gw.status).keys[0]!
      assert.isNull(key.credit)
      assert.isFalse(key.creditTracked)
    })
  )

  it.scopedLive("reload swaps keys and strategy without dropping a request in flight", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["old", "new"], {
        keys: simKeys(["old", "new"]).map((k) =>
          k.label === "old" ? { ...k, faults: { latency: { kind: "fixed" as const, ms: 300 } } } : k
        )
      })
      // Only "old" at first.
      yield* gw.reload(yield* configFor(sim, {}, ["old"]))
      const slow = yield* Effect.fork(post(`${gw.url}/v1/chat/completions`, chatBody()))
      yield* waitUntil(
        Effect.map(sim.stats, (s) => s.inFlight === 1),
        "the slow request to reach upstream"
      )
      yield* gw.reload(
        yield* configFor(sim, { strategy: [{ name: "health-aware" }, { name: "weighted" }] }, ["new"])
      )
      for (let i = 0; i < 3; i++)
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      const first = yield* Fiber.join(slow)
      assert.strictEqual(first.status, 200)
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["old"]!.requests, 1)
      assert.strictEqual(stats.keys["new"]!.requests, 3)
      const status = yield* gw.status
      assert.deepStrictEqual(
        status.keys.map((k) => k.id),
        ["new"]
      )
      assert.deepStrictEqual(status.strategy, ["health-aware", "weighted"])
    })
  )

  it.scopedLive("a client that disconnects cancels the upstream call and releases the key", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup(["stall"], {
        keys: simKeys(["stall"]).map((k) => ({ ...k, faults: { script: ["stall" as const] } }))
      })
      const req = openChat(gw)
      yield* waitUntil(
        Effect.map(sim.stats, (s) => s.inFlight === 1),
        "the request to reach upstream"
      )
      assert.strictEqual((yield* gw.status).keys[0]!.inFlight, 1)
      req.destroy()
      yield* cancelledAndReleased(sim, gw)
    })
  )

  it.scopedLive("a client that leaves mid-stream cancels the upstream stream and releases the key", () =>
    Effect.gen(function* () {
      // Ten seconds of stream: only a cancel lets upstream finish within the waits below.
      const { sim, gw } = yield* setup(["midway"], {
        stream: { keepAlives: 1, chunks: 100, chunkIntervalMs: 100 }
      })
      const controller = new AbortController()
      const res = yield* Effect.promise(() =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: chatBody({ stream: true }),
          signal: controller.signal
        })
      )
      const reader = res.body!.getReader()
      yield* Effect.promise(() => reader.read())
      assert.strictEqual((yield* gw.status).keys[0]!.inFlight, 1)
      controller.abort()
      yield* cancelledAndReleased(sim, gw)
    })
  )

  it.scopedLive("drain: stops accepting, lets requests in flight finish", () =>
    Effect.gen(function* () {
      const { gw } = yield* setup(["slow"], { latency: { kind: "fixed", ms: 300 } })
      const inFlight = yield* Effect.fork(post(`${gw.url}/v1/chat/completions`, chatBody()))
      yield* waitUntil(
        Effect.map(gw.inFlight, (n) => n === 1),
        "the request to start"
      )
      const draining = yield* Effect.fork(gw.drain("5 seconds"))
      yield* waitUntil(
        Effect.promise(() =>
          fetch(`${gw.url}/healthz`).then(
            (r) => r.status === 503,
            () => true
          )
        ),
        "the gateway to refuse"
      )
      const r = yield* Fiber.join(inFlight)
      assert.strictEqual(r.status, 200)
      yield* Fiber.join(draining)
      const after = yield* Effect.promise(() =>
        fetch(`${gw.url}/healthz`).then(
          () => "answered",
          () => "refused"
        )
      )
      assert.strictEqual(after, "refused")
    })
  )
})
