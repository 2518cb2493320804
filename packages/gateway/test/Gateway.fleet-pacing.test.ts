/**
 * Account pacing over a fleet: three gateway replicas on one real redis-server (scripts/redis.sh,
 * stopped by PID) in front of one simulator whose account window admits 5 requests per 250 ms. A
 * window learned from 429s on one replica is shown in `/status` on the others, which never saw a
 * 429, each pacing to its share (5 ÷ 3 replicas).
 */
import { execFileSync } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

const SCRIPT = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../../../scripts/redis.sh")
const [port, pid] = execFileSync(SCRIPT, ["start"], { encoding: "utf8" }).trim().split(" ")
const REDIS = `redis://127.0.0.1:${port}/0`
afterAll(() => {
  execFileSync(SCRIPT, ["stop", pid!])
})

const statusOf = (url: string) =>
  Effect.promise(() => fetch(`${url}/status`).then((r) => r.json() as Promise<Gateway.Status>))

describe("Gateway account pacing over a fleet", () => {
  it.scopedLive(
    "a window learned on one replica is in every replica's /status, each pacing to its share",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 11,
          keys: simKeys(["k1", "k2", "k3"]),
          accounts: { acme: { rpm: 5, windowMs: 250 } }
        })
        const gateways = yield* Effect.forEach([0, 1, 2], (i) =>
          Effect.flatMap(
            configFor(sim, {
              strategy: [
                { name: "account-pacing" },
                { name: "health-aware", failureThreshold: 3 },
                { name: "round-robin" }
              ],
              retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 50 },
              deadlines: { keyWaitMs: 20_000, drainMs: 2000 },
              redis: { url: REDIS, replicaId: `pace${i}`, replicas: 3 }
            }),
            Gateway.make
          )
        )
        // Only replica 0 takes traffic, until the account's window has refused it (OpenRouter says
        // its window only on its 429s).
        const answers = yield* Effect.forEach(
          Array.from({ length: 30 }),
          () => post(`${gateways[0]!.url}/v1/chat/completions`, chatBody()),
          { concurrency: 10 }
        )
        assert.isTrue(answers.every((a) => a.status === 200))
        assert.isAbove((yield* sim.stats).byOutcome["429"] ?? 0, 0)
        for (const gw of gateways.slice(1)) {
          // Within a few of the fleet's 50 ms polls (a loaded machine may be slower).
          let acme = (yield* statusOf(gw.url)).accounts.find((a) => a.id === "acme")
          for (let i = 0; i < 40 && acme?.window?.fleet === undefined; i++) {
            yield* Effect.sleep(50)
            acme = (yield* statusOf(gw.url)).accounts.find((a) => a.id === "acme")
          }
          console.log(`a replica that sent nothing: ${JSON.stringify(acme?.window)}`)
          assert.strictEqual(acme?.window?.fleet?.limit, 5)
          assert.strictEqual(acme?.window?.fleet?.replicas, 3)
          assert.strictEqual(acme?.window?.limit, 1)
          assert.isTrue(acme?.window?.exact)
          assert.strictEqual(acme?.window?.used, 0)
        }
        const own = (yield* statusOf(gateways[0]!.url)).accounts.find((a) => a.id === "acme")
        // Learned there exactly (the limit its 429s said), and paced to its share. (Its own refusals
        // may all have been answered after their reset on a loaded machine: not asserted.)
        assert.isTrue(own?.window?.exact)
        assert.strictEqual(own?.window?.fleet?.limit, 5)
      }),
    60_000
  )
})
