import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../src/Simulator.js"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { type Answer, request } from "./http.js"

// Everything here runs over real loopback HTTP with real timers, hence `it.scopedLive`.

const MINI = "openai/gpt-4o-mini"
const secret = (i: number) => Simulator.simulatedSecret(99, i)
const messages = [{ role: "user", content: "hello world!" }] // 12 chars: 4 + 3 prompt tokens
const PROMPT_TOKENS = 7
const costOf = (completionTokens: number) => PROMPT_TOKENS * 0.15e-6 + completionTokens * 0.6e-6

const chat = (sim: Simulator.Handle, key: string, body: unknown, signal?: AbortSignal) =>
  request(`${sim.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal === undefined ? {} : { signal })
  })

const get = (sim: Simulator.Handle, path: string, key?: string) =>
  request(`${sim.baseUrl}${path}`, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } })

/** Polls the stats until `predicate` holds (bounded, so a bug fails rather than hangs). */
const statsWhen = (sim: Simulator.Handle, predicate: (s: Simulator.Stats) => boolean) =>
  sim.stats.pipe(
    Effect.filterOrFail(predicate),
    Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds"))),
    Effect.orDie
  )

const basic = (overrides: Partial<Simulator.Config> = {}): Simulator.Config => ({
  seed: 1,
  keys: [
    { label: "a", account: "one", secret: secret(0), limit: 10 },
    { label: "b", account: "one", secret: secret(1) },
    { label: "c", account: "two", secret: secret(2) },
    { label: "dead", account: "one", secret: secret(3), revoked: true },
    { label: "admin", account: "one", secret: secret(4), management: true }
  ],
  ...overrides
})

describe("Simulator", () => {
  it.scopedLive("answers a JSON chat with usage.cost and X-Generation-Id, and records the generation", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      const res = yield* chat(sim, secret(0), { model: MINI, messages })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.json.object, "chat.completion")
      assert.strictEqual(res.headers.get("x-generation-id"), res.json.id)
      assert.isNull(res.headers.get("x-ratelimit-limit"))
      assert.strictEqual(res.json.choices[0].message.role, "assistant")
      assert.strictEqual(res.json.usage.prompt_tokens, PROMPT_TOKENS)
      assert.strictEqual(res.json.usage.completion_tokens, 32)
      assert.closeTo(res.json.usage.cost, costOf(32), 1e-15)

      const gen = yield* get(sim, `/generation?id=${res.json.id}`, secret(1))
      assert.strictEqual(gen.status, 200)
      assert.closeTo(gen.json.data.total_cost, costOf(32), 1e-15)
      const other = yield* get(sim, `/generation?id=${res.json.id}`, secret(2))
      assert.strictEqual(other.status, 404) // another account's generation

      const stats = yield* sim.stats
      assert.strictEqual(stats.requests, 1)
      assert.deepStrictEqual(stats.keys.a!.byOutcome, { "200": 1 })
      assert.closeTo(stats.keys.a!.spend, costOf(32), 1e-15)
    })
  )

  it.scopedLive("answers 401 for a revoked, unknown or missing key", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      const revoked = yield* chat(sim, secret(3), { model: MINI, messages })
      assert.strictEqual(revoked.status, 401)
      assert.strictEqual(revoked.json.error.code, 401)
      assert.strictEqual(revoked.json.error.metadata.error_type, "authentication")
      const unknown = yield* chat(sim, secret(50), { model: MINI, messages })
      assert.strictEqual(unknown.status, 401)
      const missing = yield* request(`${sim.baseUrl}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: MINI, messages })
      })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual((yield* get(sim, "/key", secret(3))).status, 401)
      const stats = yield* sim.stats
      assert.strictEqual(stats.unauthenticated, 2)
      assert.deepStrictEqual(stats.keys.dead!.byOutcome, { "401": 1 })
      assert.strictEqual(stats.byOutcome["401"], 3)
    })
  )

  it.scopedLive("answers 402 once the credit cap cannot cover a request, and /key reflects the debits", () =>
    Effect.gen(function* () {
      const c = costOf(32)
      const sim = yield* Simulator.make(
        basic({ keys: [{ label: "capped", secret: secret(0), limit: 2.5 * c, limitReset: "daily" }] })
      )
      const statuses: Array<number> = []
      for (let i = 0; i < 3; i++)
        statuses.push((yield* chat(sim, secret(0), { model: MINI, messages })).status)
      assert.deepStrictEqual(statuses, [200, 200, 402])
      const refused = yield* chat(sim, secret(0), { model: MINI, messages })
      assert.strictEqual(refused.json.error.metadata.error_type, "payment_required")
      // A smaller request still fits.
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages, max_tokens: 4 })).status, 200)

      const info = yield* get(sim, "/key", secret(0))
      assert.strictEqual(info.status, 200)
      assert.strictEqual(info.json.data.label, "capped")
      assert.strictEqual(info.json.data.limit_reset, "daily")
      assert.closeTo(info.json.data.usage, 2 * c + costOf(4), 1e-15)
      assert.closeTo(info.json.data.limit_remaining, 0.5 * c - costOf(4), 1e-15)
      const legacy = yield* get(sim, "/auth/key", secret(0))
      assert.deepStrictEqual(legacy.json, info.json)

      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.capped!.byOutcome, { "200": 3, "402": 2 })
      assert.closeTo(stats.keys.capped!.spend, 2 * c + costOf(4), 1e-15)
      assert.strictEqual(stats.keys.capped!.overspend, 0)
      assert.strictEqual(stats.keys.capped!.keyLookups, 2)
    })
  )

  it.scopedLive("gives a capped key its whole limit again when its limit_reset period rolls over", () =>
    Effect.gen(function* () {
      const c = costOf(32)
      const sim = yield* Simulator.make(
        basic({
          keys: [
            // Two answers fit. "short" gets a short period once spent, "long" keeps the default (a day).
            { label: "short", secret: secret(0), limit: 2.5 * c, limitReset: "daily" },
            { label: "long", secret: secret(1), limit: 2.5 * c, limitReset: "daily" },
            { label: "manual", secret: secret(2), limit: 2.5 * c, limitReset: "monthly" },
            { label: "never", secret: secret(3), limit: 2.5 * c, limitReset: null }
          ]
        })
      )
      const spend = (i: number) =>
        Effect.forEach([0, 1, 2], () =>
          Effect.map(chat(sim, secret(i), { model: MINI, messages }), (r) => r.status)
        )
      for (const i of [0, 1, 2, 3]) assert.deepStrictEqual(yield* spend(i), [200, 200, 402])
      yield* sim.resetCredit("manual")
      // A new period length starts a new period now: nothing rolls over while the keys are spent.
      yield* sim.updateKey("short", { resetPeriodMs: 10_000 })
      yield* sim.updateKey("never", { resetPeriodMs: 10_000 })
      // The simulator's clock, not a real wait: the test cannot straddle a second rollover.
      yield* sim.advanceClock(15_000)
      const remaining = (i: number) => Effect.map(get(sim, "/key", secret(i)), (r) => r.json.data)
      const short = yield* remaining(0)
      assert.closeTo(short.limit_remaining, 2.5 * c, 1e-15)
      assert.closeTo(short.usage, 2 * c, 1e-15) // all-time usage is kept
      assert.closeTo(short.usage_daily, 0, 1e-15)
      assert.closeTo((yield* remaining(1)).limit_remaining, 0.5 * c, 1e-15)
      assert.closeTo((yield* remaining(2)).limit_remaining, 2.5 * c, 1e-15)
      assert.closeTo((yield* remaining(3)).limit_remaining, 0.5 * c, 1e-15) // no limit_reset: no period
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      assert.strictEqual((yield* chat(sim, secret(1), { model: MINI, messages })).status, 402)
      const stats = yield* sim.stats
      assert.closeTo(stats.keys.short!.limitRemaining!, 1.5 * c, 1e-15)
      assert.closeTo(stats.keys.long!.limitRemaining!, 0.5 * c, 1e-15)
      assert.isTrue(Exit.isFailure(yield* Effect.exit(sim.resetCredit("nobody"))))
    })
  )

  it.scopedLive("records overspend when concurrent requests race a small cap", () =>
    Effect.gen(function* () {
      const c = costOf(32)
      const sim = yield* Simulator.make(
        basic({
          keys: [{ label: "small", secret: secret(0), limit: 1.5 * c }],
          latency: { kind: "fixed", ms: 1000 }
        })
      )
      // All three arrive while the credit still looks sufficient; each is debited on completion.
      const results = yield* Effect.all(
        [0, 1, 2].map(() => chat(sim, secret(0), { model: MINI, messages })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(
        results.map((r) => r.status),
        [200, 200, 200]
      )
      const stats = yield* sim.stats
      assert.closeTo(stats.keys.small!.spend, 3 * c, 1e-15)
      assert.closeTo(stats.keys.small!.overspend, 1.5 * c, 1e-15)
      assert.strictEqual(stats.keys.small!.overspentRequests, 2)
      assert.closeTo(stats.overspend, 1.5 * c, 1e-15)
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 402)
    })
  )

  it.scopedLive("answers OpenRouter's own 429 with Retry-After and X-RateLimit-* for the whole account", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ accounts: { one: { rpm: 2, windowMs: 3_600_000 } } }))
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      assert.strictEqual((yield* chat(sim, secret(1), { model: MINI, messages })).status, 200)
      const before = Date.now()
      const limited = yield* chat(sim, secret(0), { model: MINI, messages })
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.json.error.metadata.error_type, "rate_limit_exceeded")
      assert.strictEqual(limited.headers.get("x-ratelimit-limit"), "2")
      assert.strictEqual(limited.headers.get("x-ratelimit-remaining"), "0")
      const reset = Number(limited.headers.get("x-ratelimit-reset"))
      assert.isAbove(reset, before)
      assert.isAbove(Number(limited.headers.get("retry-after")), 3000)
      // Another key of the same account is limited too; a key of another account is not.
      assert.strictEqual((yield* chat(sim, secret(1), { model: MINI, messages })).status, 429)
      assert.strictEqual((yield* chat(sim, secret(2), { model: MINI, messages })).status, 200)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.accounts.one, {
        requests: 4,
        rateLimited: 2,
        usage: 4.05e-5, // two answers, exactly
        balance: null
      })
      // Raising the limit at run time lets the account through again.
      yield* sim.updateAccount("one", { rpm: 100 })
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
    })
  )

  it.scopedLive("plays a key's fault script exactly in order, then answers normally", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({
          keys: [
            {
              label: "scripted",
              secret: secret(0),
              faults: { script: ["ok", "500", "502", "503", "408", "429", "slow", "ok"] }
            }
          ],
          slowBody: { bytesPerWrite: 64, intervalMs: 1 }
        })
      )
      const answers: Array<Answer> = []
      for (let i = 0; i < 9; i++) answers.push(yield* chat(sim, secret(0), { model: MINI, messages }))
      assert.deepStrictEqual(
        answers.map((a) => a.status),
        [200, 500, 502, 503, 408, 429, 200, 200, 200]
      )
      assert.strictEqual(answers[1]!.json.error.metadata.error_type, "server")
      assert.strictEqual(answers[3]!.headers.get("retry-after"), "1")
      // A provider's 429: Retry-After but no X-RateLimit-* headers.
      assert.strictEqual(answers[5]!.headers.get("retry-after"), "1")
      assert.isNull(answers[5]!.headers.get("x-ratelimit-limit"))
      // The slow answer arrives whole.
      assert.strictEqual(answers[6]!.json.usage.completion_tokens, 32)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.scripted!.byOutcome, {
        "200": 4,
        "500": 1,
        "502": 1,
        "503": 1,
        "408": 1,
        "429": 1
      })
    })
  )

  it.scopedLive("resets connections and stalls until the client gives up", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({ keys: [{ label: "bad", secret: secret(0), faults: { script: ["reset", "stall", "ok"] } }] })
      )
      const reset = yield* Effect.exit(
        Effect.tryPromise(() =>
          fetch(`${sim.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${secret(0)}` },
            body: JSON.stringify({ model: MINI, messages })
          })
        )
      )
      assert.isTrue(Exit.isFailure(reset))
      const stalled = yield* Effect.exit(
        Effect.tryPromise(() =>
          fetch(`${sim.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${secret(0)}` },
            body: JSON.stringify({ model: MINI, messages }),
            signal: AbortSignal.timeout(300)
          })
        )
      )
      assert.isTrue(Exit.isFailure(stalled))
      yield* statsWhen(sim, (s) => s.inFlight === 0)
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.bad!.byOutcome, { reset: 1, stall: 1, "200": 1 })
    })
  )

  it.scopedLive("streams SSE with keep-alive comments, a final usage chunk and [DONE]", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ stream: { keepAlives: 2, chunks: 3, chunkIntervalMs: 1 } }))
      const res = yield* chat(sim, secret(0), { model: MINI, messages, stream: true, max_tokens: 10 })
      assert.strictEqual(res.status, 200)
      assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/)
      assert.isTrue(res.text.endsWith("\n\n"))
      const events = res.text.slice(0, -2).split("\n\n")
      assert.deepStrictEqual(events.slice(0, 2), [": OPENROUTER PROCESSING", ": OPENROUTER PROCESSING"])
      assert.strictEqual(events[events.length - 1], "data: [DONE]")
      const chunks = events.slice(2, -1).map((e) => {
        assert.isTrue(e.startsWith("data: "))
        return JSON.parse(e.slice(6))
      })
      assert.strictEqual(chunks.length, 4) // three content chunks and the final one
      for (const c of chunks) assert.strictEqual(c.id, res.headers.get("x-generation-id"))
      const last = chunks[chunks.length - 1]
      assert.strictEqual(last.choices[0].finish_reason, "stop")
      assert.closeTo(last.usage.cost, costOf(10), 1e-15)
      for (const c of chunks.slice(0, -1)) assert.isUndefined(c.usage)
      const streamed = chunks.map((c) => c.choices[0].delta.content).join("")
      const plain = yield* chat(sim, secret(0), { model: MINI, messages, max_tokens: 10 })
      assert.strictEqual(streamed, plain.json.choices[0].message.content)
      assert.closeTo((yield* sim.stats).keys.a!.spend, 2 * costOf(10), 1e-15)
    })
  )

  it.scopedLive("fails a stream in-band after some content with finish_reason error", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({ keys: [{ label: "m", secret: secret(0), faults: { script: ["midstream", "midstream"] } }] })
      )
      const res = yield* chat(sim, secret(0), { model: MINI, messages, stream: true })
      assert.strictEqual(res.status, 200)
      const data = res.text
        .split("\n\n")
        .filter((e) => e.startsWith("data: "))
        .map((e) => e.slice(6))
      assert.notInclude(data, "[DONE]")
      const chunks = data.map((d) => JSON.parse(d))
      const last = chunks[chunks.length - 1]
      assert.isAbove(chunks.length, 1)
      assert.isTrue(chunks.slice(0, -1).every((c) => c.choices[0].delta.content.length > 0))
      assert.strictEqual(last.error.code, 502)
      assert.strictEqual(last.error.metadata.error_type, "provider_unavailable")
      assert.strictEqual(last.choices[0].finish_reason, "error")
      // A non-streamed request with the same fault fails before the first byte instead.
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 502)
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.m!.byOutcome, { midstream: 1, "502": 1 })
      assert.strictEqual(stats.keys.m!.spend, 0)
    })
  )

  it.scopedLive("serves /credits only to management keys, and lists models with prices", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ accounts: { one: { totalCredits: 25 } } }))
      yield* chat(sim, secret(0), { model: MINI, messages })
      const ordinary = yield* get(sim, "/credits", secret(0))
      assert.strictEqual(ordinary.status, 403)
      assert.strictEqual(ordinary.json.error.metadata.error_type, "permission_denied")
      const admin = yield* get(sim, "/credits", secret(4))
      assert.strictEqual(admin.status, 200)
      assert.strictEqual(admin.json.data.total_credits, 25)
      assert.closeTo(admin.json.data.total_usage, costOf(32), 1e-15)
      const models = yield* get(sim, "/models")
      const mini = models.json.data.find((m: { id: string }) => m.id === MINI)
      assert.strictEqual(mini.pricing.prompt, "0.00000015")
      assert.strictEqual(mini.pricing.completion, "0.0000006")
    })
  )

  it.scopedLive("rejects an unknown model and malformed bodies with 400", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      const unknown = yield* chat(sim, secret(0), { model: "nope/model-x", messages })
      assert.strictEqual(unknown.status, 400)
      assert.strictEqual(unknown.json.error.metadata.error_type, "model_not_found")
      assert.include(unknown.json.error.message, "nope/model-x")
      const notJson = yield* chat(sim, secret(0), "{ not json")
      assert.strictEqual(notJson.status, 400)
      assert.match(notJson.json.error.message, /invalid json/i)
      const noMessages = yield* chat(sim, secret(0), { model: MINI })
      assert.strictEqual(noMessages.status, 400)
      assert.include(noMessages.json.error.message, "messages")
      const empty = yield* chat(sim, secret(0), { model: MINI, messages: [] })
      assert.strictEqual(empty.status, 400)
      const badMax = yield* chat(sim, secret(0), { model: MINI, messages, max_tokens: -1 })
      assert.include(badMax.json.error.message, "max_tokens")
      const stats = yield* sim.stats
      assert.deepStrictEqual(stats.keys.a!.byOutcome, { "400": 5 })
      assert.strictEqual(stats.spend, 0)
    })
  )

  it.scopedLive("draws random faults deterministically for a given seed", () =>
    Effect.gen(function* () {
      const run = (seed: number) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const sim = yield* Simulator.make({
            seed,
            keys: [
              { label: "r", secret: secret(0), faults: { rates: { "500": 0.3, "502": 0.2, slow: 0.1 } } }
            ],
            latency: { kind: "uniform", min: 0, max: 2 },
            slowBody: { bytesPerWrite: 256, intervalMs: 0 }
          }).pipe(Scope.extend(scope))
          const statuses: Array<number> = []
          for (let i = 0; i < 40; i++)
            statuses.push((yield* chat(sim, secret(0), { model: MINI, messages })).status)
          yield* Scope.close(scope, Exit.void)
          return statuses
        })
      const first = yield* run(7)
      const again = yield* run(7)
      const other = yield* run(8)
      assert.deepStrictEqual(again, first)
      assert.notDeepEqual(other, first)
      assert.include(first, 200)
      assert.include(first, 500)
      assert.include(first, 502)
    })
  )

  it.scopedLive("tracks the concurrency high-water mark globally and per key, and resets stats", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(
        basic({
          keys: [{ label: "s", secret: secret(0), faults: { script: ["stall", "stall", "stall", "stall"] } }]
        })
      )
      const controller = new AbortController()
      for (let i = 0; i < 4; i++) {
        yield* Effect.forkScoped(
          Effect.promise(() =>
            fetch(`${sim.baseUrl}/chat/completions`, {
              method: "POST",
              headers: { authorization: `Bearer ${secret(0)}` },
              body: JSON.stringify({ model: MINI, messages }),
              signal: controller.signal
            }).catch(() => undefined)
          )
        )
      }
      const busy = yield* statsWhen(sim, (s) => s.inFlight === 4)
      assert.strictEqual(busy.maxInFlight, 4)
      assert.strictEqual(busy.keys.s!.inFlight, 4)
      assert.strictEqual(busy.keys.s!.maxInFlight, 4)
      controller.abort()
      yield* statsWhen(sim, (s) => s.inFlight === 0)
      assert.strictEqual((yield* chat(sim, secret(0), { model: MINI, messages })).status, 200)
      const after = yield* sim.stats
      assert.strictEqual(after.maxInFlight, 4)
      assert.strictEqual(after.requests, 5)
      yield* sim.resetStats
      const reset = yield* sim.stats
      assert.strictEqual(reset.requests, 0)
      assert.strictEqual(reset.maxInFlight, 0)
      assert.deepStrictEqual(reset.keys.s!.byOutcome, {})
      assert.isAbove(reset.keys.s!.usage, 0) // state, not a stat
    })
  )

  it.scopedLive("closes with a request still stalled, and can be reconfigured at run time", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const sim = yield* Simulator.make(basic()).pipe(Scope.extend(scope))
      yield* sim.setFaultScript("a", ["stall"])
      const pending = fetch(`${sim.baseUrl}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret(0)}` },
        body: JSON.stringify({ model: MINI, messages })
      }).then(
        () => "answered",
        () => "failed"
      )
      yield* statsWhen(sim, (s) => s.inFlight === 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* Effect.promise(() => pending), "failed")

      const live = yield* Simulator.make(basic())
      yield* live.updateKey("a", { revoked: true })
      assert.strictEqual((yield* chat(live, secret(0), { model: MINI, messages })).status, 401)
      yield* live.updateKey("b", { limit: 0 })
      assert.strictEqual((yield* chat(live, secret(1), { model: MINI, messages })).status, 402)
      yield* live.updateKey("b", { limit: null })
      assert.strictEqual((yield* chat(live, secret(1), { model: MINI, messages })).status, 200)
      const added = yield* live.addKey({ label: "new", secret: secret(9), account: "two" })
      assert.strictEqual(
        (yield* chat(live, Redacted.value(added.secret), { model: MINI, messages })).status,
        200
      )
      const missing = yield* Effect.flip(live.updateKey("nobody", { revoked: true }))
      assert.strictEqual(missing.reason, "UnknownKey")
      const duplicate = yield* Effect.flip(live.addKey({ label: "a", secret: secret(10) }))
      assert.strictEqual(duplicate.reason, "InvalidConfig")
    })
  )

  it.scopedLive("serves its stats and a reset over HTTP for out-of-process benchmarks", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic())
      yield* chat(sim, secret(0), { model: MINI, messages })
      yield* chat(sim, secret(3), { model: MINI, messages })
      const stats = yield* request(`${sim.url}/__simulator/stats`, {})
      assert.strictEqual(stats.status, 200)
      assert.deepStrictEqual(stats.json, yield* sim.stats)
      assert.notInclude(stats.text, "sk-or-")
      assert.strictEqual((yield* request(`${sim.url}/__simulator/reset`, { method: "POST" })).status, 200)
      assert.strictEqual((yield* sim.stats).requests, 0)
      assert.strictEqual((yield* request(`${sim.baseUrl}/nowhere`, {})).status, 404)
    })
  )

  it.scopedLive("remembers recent requests with their pass-through headers, never the key", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make(basic({ requestsKept: 3 }))
      const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      yield* request(`${sim.baseUrl}/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${secret(0)}`,
          traceparent,
          "x-request-id": "req-1",
          "x-title": "or-balancer",
          "http-referer": "https://example.test"
        },
        body: JSON.stringify({ model: MINI, messages })
      })
      const first = (yield* sim.recentRequests)[0]!
      assert.strictEqual(first.route, "chat")
      assert.strictEqual(first.key, "a")
      assert.deepStrictEqual(
        { ...first.headers, "user-agent": undefined },
        {
          traceparent,
          "x-request-id": "req-1",
          "x-title": "or-balancer",
          "http-referer": "https://example.test",
          "user-agent": undefined
        }
      )
      for (const i of [1, 2, 50]) yield* chat(sim, secret(i), { model: MINI, messages })
      const recent = yield* sim.recentRequests
      assert.deepStrictEqual(
        recent.map((r) => r.key),
        ["b", "c", undefined]
      )
      const overHttp = yield* request(`${sim.url}/__simulator/requests`, {})
      assert.deepStrictEqual(overHttp.json, JSON.parse(JSON.stringify(recent))) // no `key` when unknown
      assert.notInclude(overHttp.text, "sk-or-")
    })
  )

  it.scopedLive("provides the Simulator service as a layer", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.Simulator
      assert.match(sim.baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/api\/v1$/)
      assert.strictEqual(sim.keys.length, 5)
      const primary = sim.keys.find((k) => k.label === "primary")!
      assert.strictEqual(
        (yield* chat(sim, Redacted.value(primary.secret), { model: MINI, messages })).status,
        200
      )
    }).pipe(Effect.provide(Simulator.layer({ ...Simulator.demoPool(3), latency: { kind: "fixed", ms: 0 } })))
  )

  it.effect("validates configuration and generates key-shaped secrets deterministically", () =>
    Effect.gen(function* () {
      const secrets = Simulator.demoPool(5).keys.map((k) => k.secret as string)
      assert.strictEqual(new Set(secrets).size, 5)
      for (const s of secrets) assert.match(s, /^sk-or-v1-[0-9a-f]{64}$/)
      assert.deepStrictEqual(
        Simulator.demoPool(5).keys.map((k) => k.secret),
        secrets
      )
      assert.notDeepEqual(
        Simulator.demoPool(6).keys.map((k) => k.secret),
        secrets
      )
      const tooMuch = yield* Effect.flip(
        Effect.scoped(
          Simulator.make({ keys: [{ secret: secret(0), faults: { rates: { "500": 0.7, "502": 0.5 } } }] })
        )
      )
      assert.strictEqual(tooMuch.reason, "InvalidConfig")
      const twice = yield* Effect.flip(
        Effect.scoped(Simulator.make({ keys: [{ secret: secret(0) }, { secret: secret(0) }] }))
      )
      assert.notInclude(twice.message, secret(0))
      const bad = yield* Effect.flip(
        Simulator.decodeConfig({ keys: [{ secret: secret(0), limit: -1 }], bogus: 1 })
      )
      assert.strictEqual(bad.reason, "InvalidConfig")
      assert.include(bad.message, "limit")
      assert.include(bad.message, "bogus")
      const fromJson = yield* Simulator.decodeConfig(JSON.parse(JSON.stringify(Simulator.demoPool(5))))
      assert.strictEqual(fromJson.keys.length, 5)
    })
  )
})
