import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { configFor, envOf, fileFor, simKeys } from "./GatewaySupport.js"

// A key whose upstream call could never be made (here a per-key `baseUrl` that is not a URL: the
// file's schema accepts any string there) is refused at start-up, with the field's path, rather
// than failing on the first request routed to it (on the fast path a throw there once crashed the
// process and left the key leased).
describe("Gateway, a key whose upstream call cannot be made", () => {
  it.scopedLive("from the config file: refused at start-up, naming keys[i].baseUrl", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["good", "broken"]) })
      const file = fileFor(sim)
      const keys = file.keys.map((k) => (k.id === "broken" ? { ...k, baseUrl: "not a url" } : k))
      const exit = yield* Effect.exit(
        GatewayConfig.decode({ ...file, keys }).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(envOf(sim))),
          Effect.flatMap(Gateway.make)
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(JSON.stringify(exit), "keys[1].baseUrl: must be an http(s) URL")
    })
  )

  it.scopedLive("built in code: Gateway.make fails the same way, and a good config still starts", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["broken", "good"]) })
      const config = yield* configFor(sim)
      const exit = yield* Effect.exit(
        Gateway.make({
          ...config,
          keys: config.keys.map((k) => (k.id === "broken" ? { ...k, baseUrl: "ftp://example" } : k))
        })
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(JSON.stringify(exit), "keys[0].baseUrl")
      const gw = yield* Gateway.make(config)
      assert.strictEqual((yield* gw.status).keys.length, 2)
    })
  )
})
