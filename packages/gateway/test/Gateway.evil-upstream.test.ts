/**
 * The gateway against hostile and broken upstreams (`EvilUpstream.ts`): no key secret ever
 * reaches a client, in any body or header, in any form; and a 2xx that is not a good answer is
 * the key's failure, failed over before anything reaches the client; a key's problem (401, 402,
 * a key limit) is never the caller's answer, and every Retry-After the gateway sends is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, oneKeyConfig, post, simKeys, TOKEN } from "./GatewaySupport.js"
import {
  chat,
  configOn,
  evilUpstream,
  gatewayOn,
  type Mode,
  type Received,
  SECRET,
  SECRET_BODY
} from "./EvilUpstream.js"

/** Nothing of the secret in anything the client received; the upstream did get it (the check can fail). */
const noSecret = (r: Received, seen: ReadonlyArray<string>) => {
  assert.include(seen, `Bearer ${SECRET}`)
  const all = `${r.status}\n${r.headers}\n${r.text}`
  assert.notInclude(all, SECRET_BODY)
  assert.notInclude(all, SECRET_BODY.slice(0, 16))
  assert.notInclude(all, SECRET_BODY.slice(-16))
}

describe("Gateway against an evil upstream: no key reaches a client", () => {
  const rejected: ReadonlyArray<[string, Mode]> = [
    ["a 401 JSON body echoing `Bearer sk-or-…`", "echo-401-json"],
    ["a 401 plain-text body echoing the key", "echo-401-text"],
    ["a 401 body echoing the key URL-encoded", "echo-401-urlencoded"]
  ]
  for (const [what, mode] of rejected) {
    it.scopedLive(`${what}: the client never sees the secret`, () =>
      Effect.gen(function* () {
        const evil = yield* evilUpstream([mode])
        const gw = yield* gatewayOn(evil.url)
        const r = yield* chat(gw)
        assert.notStrictEqual(r.status, 200)
        noSecret(r, evil.seen)
      })
    )
  }

  it.scopedLive("a 200 carrying the key in response headers: passed on with the key cut out", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["key-in-header"])
      const gw = yield* gatewayOn(evil.url)
      const r = yield* chat(gw)
      assert.strictEqual(r.status, 200)
      assert.strictEqual(JSON.parse(r.text).choices[0].message.content, "fine")
      noSecret(r, evil.seen)
      // The headers themselves went through, scrubbed in place.
      assert.include(r.headers, "x-echo-key: sk-or-***")
      assert.include(r.headers, "x-echo-auth: Bearer sk-or-***")
      assert.include(r.headers, "other=1")
    })
  )

  it.scopedLive(
    "a 200 whose head names each header once (JSON and stream): passed on scrubbed, with the gateway's request id and the real length",
    () =>
      Effect.gen(function* () {
        const evil = yield* evilUpstream(["key-in-header-once", "key-in-header-once"])
        const gw = yield* gatewayOn(evil.url)
        for (const stream of [false, true]) {
          const r = yield* chat(gw, stream)
          assert.strictEqual(r.status, 200)
          noSecret(r, evil.seen)
          assert.include(r.headers, "x-echo-key: sk-or-***")
          assert.include(r.headers, "x-custom: v")
          assert.notInclude(r.headers, "upstream-id")
          assert.match(r.headers, /x-request-id: gw-/)
          if (stream) assert.notInclude(r.headers, "content-length")
          else assert.include(r.headers, `content-length: ${Buffer.byteLength(r.text)}`)
        }
      })
  )

  it.scopedLive("a 200 carrying X-RateLimit-* (any case): account pacing learns the window from it", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["ratelimit-headers"])
      const gw = yield* Gateway.make(
        yield* oneKeyConfig(evil.url, SECRET, {
          keys: [{ id: "only", secretEnv: "KEY_ONLY", account: "acme" }],
          accounts: { acme: {} },
          strategy: [{ name: "account-pacing" }, { name: "round-robin" }]
        })
      )
      assert.strictEqual((yield* chat(gw)).status, 200)
      const status = yield* Effect.promise(() =>
        fetch(`${gw.url}/status`).then((r) => r.json() as Promise<Gateway.Status>)
      )
      assert.strictEqual(status.accounts[0]?.window?.limit, 7)
    })
  )

  it.scopedLive("a stream echoing the key split across chunks: every split form is cut out", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["stream-split-key"])
      const gw = yield* gatewayOn(evil.url)
      const r = yield* chat(gw, true)
      assert.strictEqual(r.status, 200)
      noSecret(r, evil.seen)
      // Every event arrived, each with the key cut down to its mask.
      assert.strictEqual(r.text.split("sk-or-…").length - 1, 4)
      assert.include(r.text, "data: [DONE]")
      const status = yield* gw.status
      assert.strictEqual(status.keys[0]!.successes, 1)
    })
  )

  it.scopedLive("after all of the above, /metrics and /status hold no secret either", () =>
    Effect.gen(function* () {
      const modes: Array<Mode> = ["echo-401-json", "echo-401-text", "echo-401-urlencoded", "key-in-header"]
      const evil = yield* evilUpstream(modes)
      const gw = yield* gatewayOn(evil.url, 1)
      for (let i = 0; i < modes.length; i++) noSecret(yield* chat(gw), evil.seen)
      const metrics = yield* Effect.promise(() => fetch(`${gw.url}/metrics`).then((r) => r.text()))
      const status = yield* Effect.promise(() => fetch(`${gw.url}/status`).then((r) => r.text()))
      for (const text of [metrics, status]) {
        assert.notInclude(text, SECRET_BODY)
        assert.notInclude(text, SECRET_BODY.slice(-12))
      }
    })
  )
})

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

  it.scopedLive("a stream's keep-alives before its first event are held only up to a bound", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["long-keepalives"])
      const gw = yield* gatewayOn(evil.url)
      const res = yield* Effect.promise(() =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "openai/gpt-4o-mini", messages: [], stream: true })
        })
      )
      // The head and the keep-alives reached the client before the first event was even sent.
      const reader = res.body!.getReader()
      yield* Effect.promise(() => reader.read())
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(evil.log, [])
      let text = ""
      for (;;) {
        const r = yield* Effect.promise(() => reader.read())
        if (r.done) break
        text += new TextDecoder().decode(r.value)
      }
      assert.include(text, '"content":"fine"')
      assert.deepStrictEqual(evil.log, ["first event sent"])
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

describe("Gateway: a caller never sees a key's problem", () => {
  const health = [
    { name: "health-aware", failureThreshold: 1, baseCooldownMs: 60_000 },
    { name: "round-robin" }
  ]
  const keyProblems: ReadonlyArray<[string, Mode, RegExp]> = [
    ["401 (a disabled key)", "401", /refused by OpenRouter/],
    ["402 (a key at its limit)", "402", /out of credit or at its limit/],
    ['403 "Key limit exceeded"', "403-key-limit", /out of credit or at its limit/],
    ["402 for spend in flight", "402-in-flight", /too much spend in flight/]
  ]
  for (const [what, mode, why] of keyProblems) {
    it.scopedLive(`an upstream ${what} is never forwarded: the gateway's own 503 says why and when`, () =>
      Effect.gen(function* () {
        const evil = yield* evilUpstream([mode])
        const gw = yield* gatewayOn(evil.url, 2, health)
        const r = yield* chat(gw)
        assert.strictEqual(r.status, 503, r.text)
        const error = JSON.parse(r.text).error
        assert.strictEqual(error.code, 503)
        assert.strictEqual(error.metadata.reason, "keys_unavailable")
        assert.match(error.message, why)
        assert.notMatch(r.text, /disabled|Key limit/)
        // When the first key comes back (its ejection ends), and a Retry-After to match, bounded.
        assert.isString(error.metadata.first_key_back_at)
        assert.match(error.message, /the first key may be back at/)
        const retryAfter = Number(/retry-after: (\d+)/.exec(r.headers)?.[1])
        assert.isTrue(retryAfter >= 1 && retryAfter <= 300, r.headers)
        assert.strictEqual(evil.seen.length, 1)
      })
    )
  }

  it.scopedLive("against the simulator, a revoked key and a key at its cap: one 503 naming both", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 7,
        keys: simKeys(["revoked", "broke"]).map((k) =>
          k.label === "revoked" ? { ...k, revoked: true } : { ...k, limit: 0 }
        )
      })
      const gw = yield* Gateway.make(yield* configFor(sim, { strategy: health }))
      const r = yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      assert.strictEqual(r.status, 503, r.text)
      const error = JSON.parse(r.text).error
      assert.match(error.message, /refused by OpenRouter/)
      assert.match(error.message, /out of credit or at its limit/)
      assert.sameMembers(error.metadata.attempts, ["Unauthorized", "InsufficientCredits"])
      const stats = yield* sim.stats
      assert.strictEqual(stats.keys["revoked"]!.byOutcome["401"], 1)
      assert.strictEqual(stats.keys["broke"]!.byOutcome["402"], 1)
    })
  )

  it.scopedLive("a Retry-After of 11 days is not passed on: the gateway's own is bounded", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["429-forever"])
      const gw = yield* gatewayOn(evil.url)
      const r = yield* chat(gw)
      assert.strictEqual(r.status, 429, r.text)
      const retryAfter = Number(/retry-after: (\d+)/.exec(r.headers)?.[1])
      assert.isTrue(retryAfter >= 1 && retryAfter <= 300, r.headers)
    })
  )

  it.scopedLive("a Retry-After of 11 days cools the key at most 5 minutes, before and after a reload", () =>
    Effect.gen(function* () {
      const evil = yield* evilUpstream(["429-forever"])
      const gw = yield* gatewayOn(evil.url)
      assert.strictEqual((yield* chat(gw)).status, 429)
      const coolingFor = Effect.map(gw.status, (s) => {
        const until = s.keys[0]!.coolingUntil
        return until === null ? 0 : Date.parse(until) - Date.now()
      })
      const before = yield* coolingFor
      assert.isTrue(before > 0 && before <= 300_000, `cooling ${before} ms`)
      yield* gw.reload(yield* configOn(evil.url))
      const after = yield* coolingFor
      assert.isTrue(after <= 300_000, `cooling ${after} ms after the reload`)
    })
  )
})
