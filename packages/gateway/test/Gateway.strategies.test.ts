import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

const LABELS = ["k1", "k2", "k3"]

const setup = (strategy: ReadonlyArray<unknown>) =>
  Effect.gen(function* () {
    const sim = yield* Simulator.make({ seed: 7, keys: simKeys(LABELS) })
    const gw = yield* Gateway.make(yield* configFor(sim, { strategy }))
    return { sim, gw }
  })

const okByKey = (sim: Simulator.Handle) =>
  Effect.map(sim.stats, (s) => LABELS.map((l) => s.keys[l]?.byOutcome["200"] ?? 0))

describe("Gateway strategy stack", () => {
  it.scopedLive("by-model: each model goes to its route's keys; a model no route matches is a 400", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup([
        {
          name: "by-model",
          routes: [
            { pattern: "anthropic/*", keys: ["k3"] },
            { pattern: "openai/*", keys: ["k1", "k2"] }
          ]
        },
        { name: "round-robin" }
      ])
      for (let i = 0; i < 4; i++) {
        const r = yield* post(
          `${gw.url}/v1/chat/completions`,
          chatBody({ model: "anthropic/claude-sonnet-4" })
        )
        assert.strictEqual(r.status, 200)
      }
      assert.deepStrictEqual(yield* okByKey(sim), [0, 0, 4])
      for (let i = 0; i < 4; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ model: "openai/gpt-4o-mini" }))
        assert.strictEqual(r.status, 200)
      }
      // Round robin within the route's two keys.
      assert.deepStrictEqual(yield* okByKey(sim), [2, 2, 4])
      const unrouted = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ model: "meta-llama/llama-3" }))
      assert.strictEqual(unrouted.status, 400)
      assert.match(JSON.parse(unrouted.text).error.message, /no route for model/)
      assert.strictEqual((yield* sim.stats).requests, 8)
    })
  )

  it.scopedLive("sticky: one session stays on one key; sessions spread over the keys", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* setup([{ name: "sticky" }, { name: "round-robin" }])
      for (let i = 0; i < 6; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ session_id: "session-a" }))
        assert.strictEqual(r.status, 200)
      }
      // Plain round robin would have spread these six over the three keys.
      const afterA = yield* okByKey(sim)
      assert.deepStrictEqual([...afterA].sort(), [0, 0, 6])
      // prompt_cache_key is an affinity too.
      for (let i = 0; i < 3; i++) {
        yield* post(`${gw.url}/v1/chat/completions`, chatBody({ prompt_cache_key: "cache-b" }))
      }
      const afterB = yield* okByKey(sim)
      const gained = afterB.map((n, i) => n - afterA[i]!)
      assert.deepStrictEqual([...gained].sort(), [0, 0, 3])
      // `user` is an affinity too, and an empty session_id is none (the client's rule, `Protocol.affinityOf`).
      for (let i = 0; i < 4; i++) {
        yield* post(
          `${gw.url}/v1/chat/completions`,
          chatBody(
            i % 2 === 0 ? { user: "user-c" } : { session_id: "", prompt_cache_key: "", user: "user-c" }
          )
        )
      }
      const afterC = yield* okByKey(sim)
      const gainedC = afterC.map((n, i) => n - afterB[i]!)
      assert.deepStrictEqual([...gainedC].sort(), [0, 0, 4])
      // Many sessions use more than one key.
      for (let i = 0; i < 12; i++) {
        yield* post(`${gw.url}/v1/chat/completions`, chatBody({ session_id: `s-${i}` }))
      }
      const spread = (yield* okByKey(sim)).map((n, i) => n - afterC[i]!)
      assert.isTrue(spread.filter((n) => n > 0).length >= 2, `spread ${spread}`)
    })
  )

  it.scopedLive("by-model: a route naming an unknown key fails the config with the field's path", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(LABELS) })
      const e = yield* Effect.flip(
        configFor(sim, {
          strategy: [
            { name: "by-model", routes: [{ pattern: "openai/*", keys: ["k1", "nope"] }] },
            { name: "random" }
          ]
        })
      )
      assert.strictEqual(e._tag, "GatewayConfigError")
      assert.strictEqual(e.path, "strategy[0].routes[0].keys[1]")
    })
  )
})
