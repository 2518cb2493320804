import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "../src/Simulator.js"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

const waitUntil = (f: Effect.Effect<boolean>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (yield* f) return
      yield* Effect.sleep(Duration.millis(10))
    }
    assert.fail(`timed out waiting for ${what}`)
  })

// A key whose upstream call cannot even be made (here a per-key `baseUrl` that is not a URL: the
// config accepts any string there) must fail that attempt, not throw out of the request handler:
// on the fast path a throw there crashed the process and left the key leased.
describe.each([
  { path: "fast path", strategy: "round-robin" },
  { path: "fiber path", strategy: "random" }
])("Gateway, a key whose upstream call cannot be made, $path", ({ strategy }) => {
  it.scopedLive("fails over to the next key; every key is released", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["broken", "good"]) })
      const config = yield* configFor(sim, { strategy: [{ name: strategy }] })
      const gw = yield* Gateway.make({
        ...config,
        keys: config.keys.map((k) => (k.id === "broken" ? { ...k, baseUrl: "not a url" } : k))
      })
      for (let i = 0; i < 4; i++) {
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
        assert.strictEqual(r.status, 200)
      }
      assert.strictEqual((yield* sim.stats).keys["good"]!.byOutcome["200"], 4)
      yield* waitUntil(
        Effect.map(gw.status, (s) => s.inFlightRequests === 0 && s.keys.every((k) => k.inFlight === 0)),
        "every key to be released"
      )
      const broken = (yield* gw.status).keys.find((k) => k.id === "broken")!
      assert.isAbove(broken.failures, 0)
    })
  )
})
