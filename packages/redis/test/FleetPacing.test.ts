/**
 * Rate windows learned by `AccountPacing` are shared over the fleet (`PacingShare` on Redis): a 429
 * learned on one replica closes the account's window on the others, and afterwards each replica
 * admits its share of the window's limit (limit ÷ live replicas). Three replicas in one process,
 * each with its own connection to one real redis-server.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as AccountPacing from "@or-balancer/strategies/AccountPacing"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Fleet } from "../src/index.js"
import { startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const replica = (i: number, keys: ReadonlyArray<Key.Key>) =>
  Effect.gen(function* () {
    const base = Layer.mergeAll(KeyPool.layer(keys).pipe(Layer.orDie), StateStore.layerMemory)
    const fleet = Fleet.layer({ url: server.url, replicaId: `p${i}`, replicas: 3, pollEveryMs: 20 }).pipe(
      Layer.orDie
    )
    // Built in the test's scope: the fleet's connection and poll live as long as the test.
    const ctx = yield* Layer.build(
      RoundRobin.layer({ name: `p${i}` }).pipe(Layer.provideMerge(Layer.merge(base, fleet)))
    )
    return yield* Effect.provide(AccountPacing.make(), ctx)
  })

/** A lease now or never: a deadline already near, so a closed window refuses rather than waits. */
const now = (p: KeySelector.Service, error?: UpstreamError.UpstreamError) =>
  Effect.exit(
    KeySelector.use(
      p,
      { attempt: 1, tried: new Set(), deadline: Date.now() + 20 },
      (l) => Effect.succeed(l.key.id),
      () => (error === undefined ? KeySelector.success(1, 0) : KeySelector.failure(1, error))
    )
  )

describe("pacing windows over the fleet", () => {
  it.scopedLive("a 429 learned on one replica paces the others; each then admits limit ÷ replicas", () =>
    Effect.gen(function* () {
      const run = `${Math.floor(performance.now())}`
      const account = `acme-${run}`
      const keys = ["k1", "k2"].map((id) =>
        Key.make({ id: `${id}-${run}`, secret: Redacted.make(`sk-or-v1-test-${id}-000000000000`), account })
      )
      const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(i, keys))
      // Let every replica mark itself live.
      yield* Effect.sleep(100)
      const resetAt = Date.now() + 600
      const refused = new UpstreamError.RateLimited({
        message: "429",
        scope: "account",
        retryAfter: Duration.millis(600),
        limit: 6,
        resetAt
      })
      assert.isTrue(Exit.isSuccess(yield* now(replicas[0]!, refused)))
      yield* Effect.sleep(100)
      // The others never saw a 429, yet their window is closed until the reset.
      for (const r of replicas.slice(1)) assert.isTrue(Exit.isFailure(yield* now(r)))
      const windows = yield* replicas[1]!.windows
      const w = windows.find((x) => x.id === `account:${account}`)
      console.log(`replica 1's window: ${JSON.stringify(w)}`)
      assert.strictEqual(w?.fleet?.limit, 6)
      assert.strictEqual(w?.fleet?.replicas, 3)
      assert.strictEqual(w?.limit, 2)
      assert.isAtLeast(w!.closedUntil!, resetAt - 50)
      // After the reset each replica admits 2 (6 ÷ 3) in the window.
      yield* Effect.sleep(Math.max(0, resetAt + 50 - Date.now()))
      const admitted = [0, 0, 0]
      for (let i = 0; i < 3; i++)
        for (let n = 0; n < 4; n++) {
          const e = yield* now(replicas[i]!)
          if (Exit.isSuccess(e)) admitted[i] = admitted[i]! + 1
        }
      console.log(`admitted after the reset per replica: ${admitted.join(", ")}`)
      assert.deepStrictEqual(admitted, [2, 2, 2])
    })
  )
})
