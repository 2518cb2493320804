/**
 * Traces: with an OpenTelemetry tracer installed (here `@effect/opentelemetry`'s NodeSdk with an
 * in-memory exporter), a span per request continuing the caller's `traceparent`, one per upstream
 * attempt whose context is the `traceparent` the upstream receives; off by default.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Gateway from "../src/Gateway.js"
import * as Tracing from "../src/Tracing.js"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
const CALLER_SPAN = "b7ad6b7169203331"
const TRACEPARENT = `00-${TRACE_ID}-${CALLER_SPAN}-01`

const withExporter = () => {
  const exporter = new InMemorySpanExporter()
  const layer = NodeSdk.layer(() => ({
    resource: { serviceName: "or-balancer-test" },
    spanProcessor: new SimpleSpanProcessor(exporter)
  }))
  return { exporter, layer }
}

const waitSpans = (exporter: InMemorySpanExporter, f: (spans: ReadonlyArray<ReadableSpan>) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (f(exporter.getFinishedSpans())) return exporter.getFinishedSpans()
      yield* Effect.sleep(Duration.millis(10))
    }
    return assert.fail(
      `spans: ${exporter
        .getFinishedSpans()
        .map((s) => s.name)
        .join(", ")}`
    )
  })

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId

describe("Tracing", () => {
  it.scopedLive(
    "a request span continuing traceparent, an attempt span per try (key, status, outcome, cost, why it failed over), its context sent upstream",
    () => {
      const { exporter, layer } = withExporter()
      return Effect.gen(function* () {
        const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["bad", "good"]) })
        yield* sim.setFaultScript("bad", ["500"])
        const gw = yield* Gateway.make(yield* configFor(sim))
        const url = `${gw.url}/v1/chat/completions`
        let failedOver = false
        for (let i = 0; i < 4 && !failedOver; i++) {
          exporter.reset()
          const r = yield* post(url, chatBody(), { traceparent: TRACEPARENT, "x-request-id": `t-${i}` })
          assert.strictEqual(r.status, 200)
          const spans = yield* waitSpans(exporter, (s) => s.some((x) => x.kind === 1 /* SERVER */))
          const request = spans.find((s) => s.name === "POST /v1/chat/completions")!
          // Continued from the caller's context.
          assert.strictEqual(request.spanContext().traceId, TRACE_ID)
          assert.strictEqual(parentOf(request), CALLER_SPAN)
          assert.strictEqual(request.attributes["http.response.status_code"], 200)
          assert.strictEqual(request.attributes["or_balancer.request_id"], `t-${i}`)
          assert.isAbove(request.attributes["or_balancer.cost"] as number, 0)
          const attempts = spans.filter((s) => s.name === "or_balancer.attempt")
          for (const a of attempts) {
            assert.strictEqual(parentOf(a), request.spanContext().spanId)
            assert.strictEqual(a.spanContext().traceId, TRACE_ID)
          }
          const last = attempts.at(-1)!
          assert.strictEqual(last.attributes["or_balancer.outcome"], "success")
          assert.strictEqual(last.attributes["http.response.status_code"], 200)
          // The upstream got the last attempt's context, not the caller's.
          const seen = (yield* sim.recentRequests).at(-1)!
          assert.strictEqual(seen.headers.traceparent, `00-${TRACE_ID}-${last.spanContext().spanId}-01`)
          assert.strictEqual(last.attributes["or_balancer.key"], seen.key)
          if (attempts.length === 2) {
            failedOver = true
            const first = attempts[0]!
            assert.strictEqual(first.attributes["or_balancer.key"], "bad")
            assert.strictEqual(first.attributes["or_balancer.outcome"], "failure")
            assert.strictEqual(first.attributes["or_balancer.error"], "ServerError")
            assert.strictEqual(first.attributes["or_balancer.retry"], "retry-other")
            assert.strictEqual(first.attributes["http.response.status_code"], 500)
            assert.strictEqual(first.status.code, 2 /* ERROR */)
            assert.strictEqual(request.attributes["or_balancer.attempts"], 2)
          }
        }
        assert.isTrue(failedOver, "no request failed over")
        // Without a traceparent: a new trace, its context upstream.
        exporter.reset()
        yield* post(url, chatBody())
        const spans = yield* waitSpans(exporter, (s) => s.some((x) => x.kind === 1))
        const root = spans.find((s) => s.kind === 1)!
        assert.isUndefined(parentOf(root))
        assert.notStrictEqual(root.spanContext().traceId, TRACE_ID)
        assert.include((yield* sim.recentRequests).at(-1)!.headers.traceparent!, root.spanContext().traceId)
      }).pipe(Effect.provide(layer))
    }
  )

  it.scopedLive("failed requests: the request span is an error and says why the balancer gave up", () => {
    const { exporter, layer } = withExporter()
    return Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 7,
        keys: simKeys(["gone"]).map((k) => ({ ...k, revoked: true }))
      })
      const gw = yield* Gateway.make(yield* configFor(sim))
      assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 503)
      const spans = yield* waitSpans(exporter, (s) => s.some((x) => x.kind === 1))
      const request = spans.find((s) => s.kind === 1)!
      assert.strictEqual(request.status.code, 2)
      assert.strictEqual(request.attributes["or_balancer.gave_up"], "AllAttemptsFailed: no-key")
      const attempt = spans.find((s) => s.name === "or_balancer.attempt")!
      assert.strictEqual(attempt.attributes["or_balancer.error"], "Unauthorized")
      assert.strictEqual(attempt.attributes["or_balancer.retry"], "eject")
    }).pipe(Effect.provide(layer))
  })

  it.effect("off by default: enabled only by the standard OTEL variables", () =>
    Effect.gen(function* () {
      const on = (env: Record<string, string>) =>
        Tracing.enabledByEnv.pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
        )
      assert.isFalse(yield* on({}))
      assert.isTrue(yield* on({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }))
      assert.isTrue(yield* on({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" }))
      assert.isTrue(yield* on({ OTEL_TRACES_EXPORTER: "otlp" }))
      assert.isFalse(yield* on({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://x" }))
      assert.isFalse(yield* on({ OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://x" }))
      // With nothing set the layer installs no tracer: Effect's own stays.
      const tracer = yield* Effect.tracer.pipe(
        Effect.provide(Layer.fresh(Tracing.layerFromEnv)),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
      )
      assert.strictEqual(tracer, yield* Effect.tracer)
    })
  )
})
