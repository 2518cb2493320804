// Request logs never hold a secret, whatever the upstream sends back (debug level, every field).
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import { evilUpstream, type Mode, SECRET, SECRET_BODY } from "./EvilUpstream.js"
import { chatBody, oneKeyConfig, post } from "./GatewaySupport.js"
import { captureStdout, lineFor } from "./LogCapture.js"

/** A gateway with the one key holding `SECRET` in front of the evil upstream, logging everything. */
const debugGatewayOn = (url: string) =>
  Effect.gen(function* () {
    const config = yield* oneKeyConfig(url, SECRET, {
      strategy: [{ name: "health-aware", failureThreshold: 1, baseCooldownMs: 20 }, { name: "round-robin" }],
      retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 20, budget: false },
      deadlines: { keyWaitMs: 300, drainMs: 1000 },
      log: { requests: true, level: "debug" }
    })
    return yield* Gateway.make(config)
  })

describe("Request logs never hold a secret", () => {
  const forms: ReadonlyArray<[string, Mode, boolean]> = [
    ["the key whole in an upstream's plain-text error", "echo-401-text", false],
    ["the key `Bearer `-prefixed in an upstream's JSON error", "echo-401-json", false],
    ["the key URL-encoded (both ways) in an upstream's error", "echo-401-urlencoded", false],
    ["the key in an answer's headers", "key-in-header", false],
    ["the key split across a stream's chunks", "stream-split-key", true]
  ]
  for (const [what, mode, stream] of forms) {
    it.scopedLive(`${what}: not in any line`, () =>
      Effect.gen(function* () {
        const out = yield* captureStdout
        const evil = yield* evilUpstream([mode])
        const gw = yield* debugGatewayOn(evil.url)
        const id = `leak-${mode}`
        // The client's own fields may carry a key too (here the pool's): cut out of the line as well.
        const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody({ model: `x/${SECRET}`, stream }), {
          "x-request-id": id,
          "user-agent": `agent ${SECRET}`
        })
        const line = yield* lineFor(out, id)
        yield* Effect.sleep(Duration.millis(50))
        // The upstream did get the key, and the line did record what it answered.
        assert.include(evil.seen, `Bearer ${SECRET}`)
        assert.strictEqual(line.attempts[0].key, "only")
        assert.include(line.model, "sk-or-…")
        if (r.status !== 200) assert.include(line.attempts[0].message, "sk-or-…")
        const all = out.raw.join("")
        assert.notInclude(all, SECRET_BODY)
        assert.notInclude(all, SECRET_BODY.slice(0, 16))
        assert.notInclude(all, SECRET_BODY.slice(-16))
        assert.notInclude(all, encodeURIComponent(SECRET_BODY).slice(0, 16))
      })
    )
  }
})
