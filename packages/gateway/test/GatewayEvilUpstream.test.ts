/**
 * The gateway against hostile and broken upstreams (`EvilUpstream.ts`): no key secret ever
 * reaches a client, in any body or header, in any form; and a 2xx that is not a good answer is
 * the key's failure, failed over before anything reaches the client.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { chat, evilUpstream, gatewayOn, type Mode } from "./EvilUpstream.js"

describe("Gateway against a broken upstream: a bad 2xx fails over before anything reaches the client", () => {
  const bad: ReadonlyArray<[string, Mode, string]> = [
    ["a 200 text/html page", "html", "InvalidResponse"],
    ["a 200 whose JSON is cut short", "truncated-json", "InvalidResponse"],
    ["a 200 whose connection breaks before its end", "cut", "Transport"]
  ]
  for (const [what, mode, tag] of bad) {
    it.scopedLive(`${what}: the key's failure, failed over; the client gets the good answer`, () =>
      Effect.gen(function* () {
        const evil = yield* evilUpstream([mode])
        const gw = yield* gatewayOn(evil.url)
        const r = yield* chat(gw)
        assert.strictEqual(r.status, 200, r.text)
        assert.strictEqual(JSON.parse(r.text).choices[0].message.content, "fine")
        assert.strictEqual(evil.seen.length, 2)
        const status = yield* gw.status
        assert.strictEqual(status.keys[0]!.errors[tag], 1)
        assert.strictEqual(status.keys[0]!.successes, 1)
        assert.strictEqual(status.inFlightRequests, 0)
      })
    )
  }

  it.scopedLive("a 200 stream whose first event is an error fails over", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["stream-first-error"])
      const gw = yield* gatewayOn(evil.url)
      const r = yield* chat(gw, true)
      assert.strictEqual(r.status, 200)
      assert.notInclude(r.text, "Provider returned error")
      assert.include(r.text, '"content":"fine"')
      assert.strictEqual(evil.seen.length, 2)
      const status = yield* gw.status
      assert.strictEqual(status.keys[0]!.errors.ServerError, 1)
      assert.strictEqual(status.keys[0]!.successes, 1)
    })
  )

  it.scopedLive("every attempt a bad 200: the gateway's own 502 in JSON, nothing of the bad body", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["html", "html"])
      const gw = yield* gatewayOn(evil.url)
      const r = yield* chat(gw)
      assert.strictEqual(r.status, 502)
      const error = JSON.parse(r.text).error
      assert.strictEqual(error.metadata.error_type, "InvalidResponse")
      assert.notInclude(r.text, "<html>")
    })
  )
})
