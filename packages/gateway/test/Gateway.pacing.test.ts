import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

// Account pacing through the gateway, against the simulator's own account window (5 requests
// per 250 ms over three keys, 60 callers): the same load with and without `account-pacing` in the stack.

const REQUESTS = 150
const CONCURRENCY = 60

const run = (strategy: ReadonlyArray<unknown>) =>
  Effect.gen(function* () {
    const sim = yield* Simulator.make({
      seed: 11,
      keys: simKeys(["k1", "k2", "k3"]),
      accounts: { acme: { rpm: 5, windowMs: 250 } }
    })
    const gw = yield* Gateway.make(
      yield* configFor(sim, {
        strategy,
        retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 50 },
        deadlines: { keyWaitMs: 20_000, drainMs: 2000 }
      })
    )
    let next = 0
    const statuses: Array<number> = []
    const reasons = new Map<string, number>()
    yield* Effect.all(
      Array.from({ length: CONCURRENCY }, () =>
        Effect.gen(function* () {
          while (next < REQUESTS) {
            next++
            const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
            statuses.push(r.status)
            if (r.status !== 200) {
              const why = `${r.status} ${r.text.slice(0, 160)}`
              reasons.set(why, (reasons.get(why) ?? 0) + 1)
            }
          }
        })
      ),
      { concurrency: "unbounded" }
    )
    const stats = yield* sim.stats
    return {
      ok: statuses.filter((s) => s === 200).length,
      failed: statuses.filter((s) => s !== 200).length,
      upstream429: stats.byOutcome["429"] ?? 0,
      reasons: [...reasons]
    }
  })

describe("Gateway account pacing", () => {
  it.scopedLive(
    "a tight account window: far fewer upstream 429s with account-pacing, and no caller failure",
    () =>
      Effect.gen(function* () {
        const unpaced = yield* run([{ name: "health-aware", failureThreshold: 3 }, { name: "round-robin" }])
        const paced = yield* run([
          { name: "account-pacing" },
          { name: "health-aware", failureThreshold: 3 },
          { name: "round-robin" }
        ])
        // Printed for the record: the numbers the note quotes.
        console.log(
          `upstream 429s: ${unpaced.upstream429} unpaced, ${paced.upstream429} paced`,
          paced.reasons
        )
        assert.deepStrictEqual([paced.ok, paced.failed], [REQUESTS, 0])
        // Learning costs a window or two of refusals; without pacing every window's excess is one.
        assert.isAbove(unpaced.upstream429, 3 * paced.upstream429)
        assert.isAbove(unpaced.upstream429, 60)
      }),
    60_000
  )
})
