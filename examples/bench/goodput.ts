/**
 * Goodput under trouble: the demo pool (revoked key, one-cent cap, flaky key, rate-limited
 * account) with a fixed seed, `requests` chat requests at `concurrency` in flight, through our
 * default stack and through the faithful port of the seed's RoundRobinClient, each against a
 * fresh simulator. What the upstream saw comes from the simulator's own stats.
 */
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Runner from "../src/lib/Runner.js"
import { RoundRobinClient } from "../src/lib/SeedRoundRobin.js"
import * as Stack from "../src/lib/Stack.js"
import * as Target from "../src/lib/Target.js"

export interface Result {
  readonly client: string
  readonly requests: number
  readonly succeeded: number
  /** Failed as seen by the caller. */
  readonly failed: number
  readonly failures: Readonly<Record<string, number>>
  readonly upstreamCalls: number
  /** Calls to a key that could not serve: 401 (revoked), 402 (out of credit), 429 (rate limited). */
  readonly wastedCalls: number
  /** Calls that met a transient fault (5xx, 408, stall, reset) on a key that can serve. */
  readonly faultedCalls: number
  readonly overspendUsd: number
  readonly spendUsd: number
  readonly wallSeconds: number
}

const models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "google/gemini-2.0-flash-001"]
const body = (i: number) => ({
  model: models[i % models.length]!,
  messages: [{ role: "user", content: `Question ${i}` }],
  max_tokens: 16
})

const summarize = (
  client: string,
  requests: number,
  succeeded: number,
  failures: Record<string, number>,
  sim: Simulator.Stats,
  wallSeconds: number
): Result => {
  let wasted = 0
  let faulted = 0
  for (const k of Object.values(sim.keys)) {
    for (const [outcome, n] of Object.entries(k.byOutcome)) {
      if (outcome === "401" || outcome === "402" || outcome === "429") wasted += n
      else if (outcome !== "200") faulted += n
    }
  }
  return {
    client,
    requests,
    succeeded,
    failed: requests - succeeded,
    failures,
    upstreamCalls: sim.requests,
    wastedCalls: wasted,
    faultedCalls: faulted,
    overspendUsd: sim.overspend,
    spendUsd: Number(sim.spend.toFixed(6)),
    wallSeconds: Number(wallSeconds.toFixed(2))
  }
}

export const ours = (requests: number, concurrency: number, seed: number) =>
  Effect.gen(function* () {
    const client = yield* OpenRouterClient.OpenRouterClient
    const target = yield* Target.Target
    const failures: Record<string, number> = {}
    let succeeded = 0
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: requests }, (_, i) => i),
      (i) =>
        Effect.match(client.chat(body(i)), {
          onSuccess: () => {
            succeeded++
          },
          onFailure: (e) => {
            // Name why the balancer gave up, and on what, so a miss can be traced to its cause.
            const kind =
              e._tag === "AllAttemptsFailed"
                ? `AllAttemptsFailed(${e.reason}: ${e.attempts.map((a) => `${a.keyId} ${a.error._tag}`).join(", ")})`
                : e._tag
            failures[kind] = (failures[kind] ?? 0) + 1
          }
        }),
      { concurrency, discard: true }
    )
    const wall = (performance.now() - start) / 1000
    return summarize(
      "or-balancer default stack",
      requests,
      succeeded,
      failures,
      yield* target.simulator!.stats,
      wall
    )
  }).pipe(Effect.provide(Stack.layer(Stack.defaultStrategy())), (program) =>
    Runner.provide({ simulator: Simulator.demoPool(seed), program })
  )

export const seedPort = (requests: number, concurrency: number, seed: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sim = yield* Simulator.make(Simulator.demoPool(seed))
      const client = new RoundRobinClient(
        sim.keys.map((k) => Redacted.value(k.secret)),
        { baseUrl: sim.baseUrl, timeoutMs: 5_000 }
      )
      const failures: Record<string, number> = {}
      let succeeded = 0
      let next = 0
      const start = performance.now()
      yield* Effect.promise(() =>
        Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (next < requests) {
              const i = next++
              const r = await client.chat(body(i))
              if (r.ok) succeeded++
              else {
                const kind = r.status === undefined ? r.error : `HTTP ${r.status}`
                failures[kind] = (failures[kind] ?? 0) + 1
              }
            }
          })
        )
      )
      const wall = (performance.now() - start) / 1000
      return summarize("seed RoundRobinClient port", requests, succeeded, failures, yield* sim.stats, wall)
    })
  )

export const run = async (options: { requests?: number; concurrency?: number; seed?: number } = {}) => {
  const requests = options.requests ?? 10_000
  const concurrency = options.concurrency ?? 64
  const seed = options.seed ?? 42
  const a = (await Effect.runPromise(ours(requests, concurrency, seed))) as Result
  const b = await Effect.runPromise(seedPort(requests, concurrency, seed))
  return {
    requests,
    concurrency,
    seed,
    ours: a,
    seed_port: b,
    wastedRatio: a.wastedCalls === 0 ? Infinity : b.wastedCalls / a.wastedCalls
  }
}
