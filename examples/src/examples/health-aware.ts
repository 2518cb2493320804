/**
 * Health-aware (the seed's `HealthyBalancer`): failures eject a key for a cooldown that grows with
 * each ejection, and a trial request re-admits it. Here `revoked` answers 401 and `broken` fails
 * its first five requests with 500s (two good keys stay); every caller still gets an answer, and the bad keys see only
 * the few requests it takes to find them out.
 */
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"
import * as Target from "../lib/Target.js"

export const simulator: Simulator.Config = {
  seed: 13,
  keys: [
    { label: "good", account: "acme", secret: Simulator.simulatedSecret(13, 0), limit: 10 },
    { label: "good-2", account: "acme", secret: Simulator.simulatedSecret(13, 3), limit: 10 },
    { label: "revoked", account: "acme", secret: Simulator.simulatedSecret(13, 1), limit: 10, revoked: true },
    {
      label: "broken",
      account: "acme",
      secret: Simulator.simulatedSecret(13, 2),
      limit: 10,
      faults: { script: ["500", "500", "500", "500", "500"] }
    }
  ],
  latency: { kind: "fixed", ms: 2 }
}

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const target = yield* Target.Target
  const results = yield* Effect.forEach(
    Array.from({ length: 30 }, (_, i) => i),
    (i) => Effect.either(client.chat(Pools.ask(`Question ${i}`))),
    { concurrency: 1 }
  )
  const succeeded = results.filter(Either.isRight).length
  const health = yield* HealthAware.status()
  const upstream = target.simulator
    ? Object.fromEntries(
        Object.entries((yield* target.simulator.stats).keys).map(([id, k]) => [id, k.byOutcome])
      )
    : {}
  yield* Console.log(`30 requests, ${succeeded} answered`)
  for (const k of health.keys) {
    yield* Console.log(
      `  ${k.id.padEnd(8)} ${k.state.padEnd(9)} ejections ${k.ejections}${k.reason ? ` (${k.reason})` : ""}; upstream saw ${JSON.stringify(upstream[k.id] ?? {})}`
    )
  }
  return { succeeded, health: health.keys, upstream }
}).pipe(
  Effect.provide(
    Stack.layer(HealthAware.layer({ failureThreshold: 2 }).pipe(Layer.provide(RoundRobin.layer())))
  )
)

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
