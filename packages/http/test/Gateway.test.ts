import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import * as Simulator from "../src/Simulator.js"
import { chatBody, configFor, loadOpenAI, post, simKeys, TOKEN } from "./GatewaySupport.js"

describe("Gateway", () => {
  it.live("smoke", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["a", "b"]) })
      const gw = yield* Gateway.make(yield* configFor(sim))
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      console.log(r.status, r.text)
      const OpenAI = yield* Effect.promise(loadOpenAI)
      const client = new OpenAI({ apiKey: TOKEN, baseURL: `${gw.url}/v1` })
      const c = yield* Effect.promise(() =>
        client.chat.completions.create({
          model: "openai/gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }]
        })
      )
      console.log(JSON.stringify(c))
      console.log(yield* gw.metrics)
      console.log(JSON.stringify(yield* gw.status, null, 1))
      assert.strictEqual(r.status, 200)
    }).pipe(Effect.scoped)
  )
})
