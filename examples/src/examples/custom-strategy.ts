/**
 * Writing a strategy of your own, in a few lines against core's `KeySelector` tag: "fastest
 * first" keeps an exponentially weighted moving average of each key's latency (from the lease's
 * reports) and picks the lowest; a key with no sample yet is tried first. Works under any
 * decorator (health, concurrency, by-model) like the built-in ones.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Monitor from "@or-balancer/core/Monitor"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

/** The custom strategy: a `Layer` providing `KeySelector`. */
export const FastestFirst = Layer.effect(
  KeySelector.KeySelector,
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const ewma = new Map<string, number>()
    return KeySelector.make((request) =>
      Effect.flatMap(pool.get, (keys) => {
        const candidates = KeySelector.candidates(request, keys)
        if (candidates.length === 0) {
          return Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.fail(KeySelector.explain(request, keys, now))
          )
        }
        let best = candidates[0]!
        for (const k of candidates) if ((ewma.get(k.id) ?? -1) < (ewma.get(best.id) ?? -1)) best = k
        return Effect.succeed(
          KeySelector.lease(best, (outcome) =>
            Effect.sync(() => {
              if (outcome._tag === "Cancelled") return // no verdict, nothing learned
              const ms = outcome._tag === "Success" ? Duration.toMillis(outcome.latency) : 10_000
              const prev = ewma.get(best.id)
              ewma.set(best.id, prev === undefined ? ms : 0.7 * prev + 0.3 * ms)
            })
          )
        )
      })
    )
  })
)

export const simulator: Simulator.Config = {
  seed: 14,
  keys: [
    { label: "slow", latency: 40 },
    { label: "fast", latency: 2 },
    { label: "medium", latency: 15 }
  ].map((k, i) => ({
    label: k.label,
    account: "acme",
    secret: Simulator.simulatedSecret(14, i),
    limit: 10,
    faults: { latency: { kind: "fixed" as const, ms: k.latency } }
  }))
}

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const monitor = yield* Monitor.Monitor
  for (let i = 0; i < 40; i++) yield* client.chat(Pools.ask(`Question ${i}`))
  const stats = yield* monitor.stats
  const distribution = Object.fromEntries(stats.keys.map((k) => [k.id, k.requests]))
  yield* Console.log("40 requests with a custom fastest-first strategy:")
  for (const k of stats.keys) {
    yield* Console.log(
      `  ${k.id.padEnd(7)} ${Runner.bar(k.share, 20)} ${String(k.requests).padStart(3)}  p50 ${k.latencyMs.p50.toFixed(0)} ms`
    )
  }
  return { distribution }
}).pipe(Effect.provide(Stack.layer(FastestFirst)))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
