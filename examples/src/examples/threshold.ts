/**
 * Threshold switching (the seed's `ThresholdBalancer`): stay on one key until its credit falls
 * under the threshold, then move to the next. When all are under it, a typed error, not the
 * seed's silent fallback to the first key.
 */
import * as Balancer from "@or-balancer/core/Balancer"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Threshold from "@or-balancer/strategies/Threshold"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Pools from "../lib/Pools.js"
import * as Runner from "../lib/Runner.js"
import * as Stack from "../lib/Stack.js"

export const simulator: Simulator.Config = {
  seed: 12,
  keys: ["first", "second", "third"].map((label, i) => ({
    label,
    account: "acme",
    secret: Simulator.simulatedSecret(12, i),
    limit: 0.002
  })),
  latency: { kind: "fixed", ms: 1 }
}

const threshold = 0.0005

export const program = Effect.gen(function* () {
  const client = yield* OpenRouterClient.OpenRouterClient
  const balancer = yield* Balancer.Balancer
  const sequence: Array<string> = []
  let stopped: string | undefined
  for (let i = 0; i < 40 && stopped === undefined; i++) {
    const request = Pools.ask(`Question ${i}`, "anthropic/claude-sonnet-4")
    const result = yield* Effect.either(
      balancer.run(
        { model: request.model },
        (key) => Effect.map(client.chatWith(key, request), (r) => ({ id: key.id, cost: r.usage?.cost })),
        { costOf: (r) => r.cost ?? undefined }
      )
    )
    if (result._tag === "Right") sequence.push(result.right.id)
    else stopped = `${result.left._tag}: ${result.left.message}`
  }
  const switches: Array<{ at: number; to: string }> = []
  sequence.forEach((id, i) => {
    if (i === 0 || sequence[i - 1] !== id) switches.push({ at: i, to: id })
  })
  yield* Console.log(`threshold ${Runner.usd(threshold)}; each key has a ${Runner.usd(0.002)} cap`)
  for (const s of switches) yield* Console.log(`  from request ${s.at}: ${s.to}`)
  yield* Console.log(`stopped after ${sequence.length} requests: ${stopped ?? "no"}`)
  return { sequence, switches, stopped }
}).pipe(Effect.provide(Stack.layer(Threshold.layer({ threshold }).pipe(Layer.provide(RoundRobin.layer())))))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
