/**
 * `/metrics` is valid Prometheus text exposition format: a gateway in front of the simulator
 * serves successes and failures (so counters and histograms hold data), and the text it serves
 * must parse with a Prometheus text-format parser from npm (`prom2javascript`: it checks each
 * line's grammar, each value's number and each histogram's `+Inf` bucket against its `_count`).
 * That parser keeps the last of two samples of one series, so the test also checks what a
 * Prometheus scrape refuses: a series written twice, and buckets that are not cumulative.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { getMetricsFromIterator, type PromHistogramData } from "prom2javascript"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as ConfigProvider from "effect/ConfigProvider"
import * as GatewayConfig from "../src/GatewayConfig.js"
import { chatBody, configFor, envOf, fileFor, post, simKeys } from "./GatewaySupport.js"

/** Every sample line's series (name and label set): Prometheus refuses one written twice. */
const duplicateSeries = (text: string): Array<string> => {
  const seen = new Set<string>()
  const dups: Array<string> = []
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const series = line.slice(0, line.lastIndexOf(" "))
    if (seen.has(series)) dups.push(series)
    seen.add(series)
  }
  return dups
}

const parse = (text: string) =>
  Effect.promise(() => getMetricsFromIterator(text.split("\n")[Symbol.iterator]()))

describe("/metrics exposition format", () => {
  it.scopedLive("parses with a Prometheus text-format parser after successes and failures", () =>
    Effect.gen(function* () {
      const keys = simKeys(["prom-ok", "prom-flaky"]).map((k) =>
        k.label === "prom-flaky" ? { ...k, faults: { script: ["500" as const, "429" as const] } } : k
      )
      const sim = yield* Simulator.make({ seed: 7, keys })
      const gw = yield* Gateway.make(yield* configFor(sim))
      for (let i = 0; i < 6; i++) {
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      }
      // A caller's bad request: answered, not a key's failure, but the text must still be valid.
      yield* post(`${gw.url}/v1/chat/completions`, "{not json")

      const text = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      assert.deepStrictEqual(duplicateSeries(text), [], text)
      const metrics = yield* parse(text)

      const requests = metrics["or_balancer_requests_total"]
      assert.isDefined(requests, text)
      assert.strictEqual(requests!.type, "counter")
      const outcomes = (requests!.data as Array<{ labels: Record<string, string>; value: number }>).map(
        (d) => `${d.labels["key"]}/${d.labels["outcome"]}`
      )
      assert.includeMembers(outcomes, ["prom-ok/success", "prom-flaky/ServerError"])

      const latency = metrics["or_balancer_request_latency_ms"]
      assert.isDefined(latency, text)
      assert.strictEqual(latency!.type, "histogram")
      const series = latency!.data as Array<PromHistogramData>
      const ok = series.find((h) => h.labels["key"] === "prom-ok")
      assert.isDefined(ok)
      assert.isAbove(ok!.count, 0)
      for (const h of series) {
        // Cumulative buckets: each bound counts at least what the one below it counts.
        const bounds = Object.entries(h.buckets)
          .map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n] as const)
          .sort((a, b) => a[0] - b[0])
        for (let i = 1; i < bounds.length; i++) assert.isAtLeast(bounds[i]![1], bounds[i - 1]![1])
        assert.strictEqual(bounds[bounds.length - 1]![0], Infinity)
      }
      // Every family declares its type once.
      const types = text.split("\n").filter((l) => l.startsWith("# TYPE "))
      assert.strictEqual(new Set(types.map((l) => l.split(" ")[2])).size, types.length)
    })
  )

  it.scopedLive("credit and cooldown gauges and a key id that needs escaping parse too", () =>
    Effect.gen(function* () {
      const labels = ["gauge-rich", "gauge-broken"]
      const sim = yield* Simulator.make({
        seed: 7,
        keys: simKeys(labels).map((k) =>
          k.label === "gauge-broken"
            ? { ...k, limit: 9, faults: { script: ["500" as const], loop: true } }
            : { ...k, limit: 5 }
        )
      })
      const file = fileFor(sim, {
        strategy: [
          { name: "health-aware", failureThreshold: 1, baseCooldownMs: 60_000 },
          { name: "credit-aware" }
        ]
      })
      // A label value with a quote, a backslash and a space: escaped in the text, intact once parsed.
      const odd = 'odd "id" \\ here'
      const config = yield* GatewayConfig.decode({
        ...file,
        keys: file.keys.map((k) => (k.id === "gauge-broken" ? { ...k, id: odd } : k))
      }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(envOf(sim))))
      const gw = yield* Gateway.make(config)
      for (let i = 0; i < 3; i++) {
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
      }
      const text = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      assert.deepStrictEqual(duplicateSeries(text), [], text)
      const metrics = yield* parse(text)
      const gauge = (name: string) =>
        new Map(
          ((metrics[name]?.data ?? []) as Array<{ labels: Record<string, string>; value: number }>).map(
            (d) => [d.labels["key"], d.value]
          )
        )
      assert.strictEqual(metrics["or_balancer_cooldown"]?.type, "gauge", text)
      assert.strictEqual(gauge("or_balancer_cooldown").get(odd), 1, text)
      assert.strictEqual(gauge("or_balancer_cooldown").get("gauge-rich"), 0)
      const rich = gauge("or_balancer_credit_remaining_usd").get("gauge-rich")
      assert.isTrue(rich !== undefined && rich > 4 && rich < 5, `credit ${rich}`)
    })
  )
})
