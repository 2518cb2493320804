import { describe, expect, it } from "@effect/vitest"
import { KeySelector, UpstreamError } from "@or-balancer/core"
import { AccountPacing, RoundRobin } from "@or-balancer/strategies"
import { Duration, Effect, Fiber, Layer, TestClock } from "effect"
import { base, key, request } from "./util.js"

// Spread admissions (issue 14's tail latency), in virtual time: 32 callers in a closed loop over
// two accounts whose windows admit 60 and 200 calls a second (Trouble's), each call 20 ms. The
// demand is several times what the windows admit, so every caller waits for a window: filled in a
// burst, a window leaves the callers who come after it waiting for the rest of it; spread, each
// waits its turn.

const north = [key("north-1", { account: "north" }), key("north-2", { account: "north" })]
const south = [key("south-1", { account: "south" }), key("south-2", { account: "south" })]

// An upstream account as the simulator keeps it: `limit` calls per window of `windowMs`, the
// window opening at the first call after the previous one ended.
class UpstreamAccount {
  start = -Infinity
  count = 0
  constructor(
    readonly limit: number,
    readonly windowMs: number
  ) {}
  /** The refusal's reset (epoch ms), or `undefined`: admitted. */
  call(now: number): number | undefined {
    if (now >= this.start + this.windowMs) {
      this.start = now
      this.count = 0
    }
    if (this.count >= this.limit) return this.start + this.windowMs
    this.count++
    return undefined
  }
}

interface Run {
  readonly served: number
  readonly refused: number
  readonly p50: number
  readonly p99: number
}

const closedLoop = (options: AccountPacing.Options, seconds: number) =>
  Effect.gen(function* () {
    const pacing = yield* AccountPacing.make(options)
    const upstream: Record<string, UpstreamAccount> = {
      north: new UpstreamAccount(60, 1000),
      south: new UpstreamAccount(200, 1000)
    }
    const latencies: Array<number> = []
    let refused = 0
    const end = (yield* TestClock.currentTimeMillis) + seconds * 1000
    const caller = Effect.gen(function* () {
      while ((yield* TestClock.currentTimeMillis) < end) {
        const t0 = yield* TestClock.currentTimeMillis
        for (;;) {
          const lease = yield* KeySelector.toEffect(pacing.decide(request({ deadline: t0 + 60_000 })))
          const now = yield* TestClock.currentTimeMillis
          const reset = upstream[lease.key.account!]!.call(now)
          if (reset === undefined) {
            yield* Effect.sleep(Duration.millis(20))
            lease.unsafeReport(KeySelector.success(20))
            break
          }
          refused++
          lease.unsafeReport(
            KeySelector.failure(
              0,
              new UpstreamError.RateLimited({
                message: "HTTP 429",
                scope: "account",
                retryAfter: Duration.millis(reset - now),
                limit: upstream[lease.key.account!]!.limit,
                resetAt: reset
              })
            )
          )
        }
        latencies.push((yield* TestClock.currentTimeMillis) - t0)
      }
    })
    const fibers = yield* Effect.forEach(Array.from({ length: 32 }), () => Effect.fork(caller))
    for (let t = 0; t < seconds * 1000 + 2000; t += 50) yield* TestClock.adjust(50)
    yield* Effect.forEach(fibers, Fiber.join)
    // The first second teaches the windows: the tail is measured after it.
    const steady = latencies.slice(300).sort((a, b) => a - b)
    const q = (p: number) => steady[Math.floor(p * (steady.length - 1))]!
    return { served: latencies.length, refused, p50: q(0.5), p99: q(0.99) } satisfies Run
  }).pipe(Effect.provide(RoundRobin.layer().pipe(Layer.provideMerge(base([...north, ...south])))))

describe("AccountPacing spread", () => {
  it.effect(
    "a closed loop over windows of 60/s and 200/s: as many calls served as in bursts, a tail 3x shorter",
    () =>
      Effect.gen(function* () {
        const burst = yield* closedLoop({ spread: false }, 8)
        const spread = yield* closedLoop({}, 8)
        console.log(JSON.stringify({ burst, spread }))
        // What the windows admit in 8 s: 2,080. Both serve nearly all of it, with few refusals.
        expect(burst.served).toBeGreaterThan(0.93 * 2080)
        expect(spread.served).toBeGreaterThan(0.95 * 2080)
        expect(spread.refused).toBeLessThanOrEqual(burst.refused)
        // Filled in bursts, a window makes later callers wait for the rest of it (~0.8 s).
        expect(burst.p99).toBeGreaterThan(700)
        // Spread, every caller waits its turn: about 32 callers ÷ 260 a second.
        expect(spread.p99).toBeLessThan(burst.p99 / 3)
      }),
    { timeout: 120_000 }
  )
})
