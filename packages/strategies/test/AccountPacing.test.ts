import { describe, expect, it } from "@effect/vitest"
import { KeySelector, UpstreamError } from "@or-balancer/core"
import { AccountPacing, RoundRobin } from "@or-balancer/strategies"
import { Duration, Effect, Fiber, FastCheck as fc, Layer, TestClock } from "effect"
import { base, key, request } from "./util.js"

// AccountPacing over RoundRobin: windows learned from 429s, closed windows gated, waited out or
// passed to another account's keys.

const red1 = key("red-1", { account: "red" })
const red2 = key("red-2", { account: "red" })
const blue = key("blue-1", { account: "blue" })
const loner = key("loner")

const build = (ks: ReadonlyArray<ReturnType<typeof key>>) =>
  Effect.gen(function* () {
    const pacing = yield* AccountPacing.make()
    return pacing
  }).pipe(Effect.provide(RoundRobin.layer().pipe(Layer.provideMerge(base(ks)))))

const only =
  (...ids: ReadonlyArray<string>): KeySelector.Gate =>
  (k) =>
    ids.includes(k.id) ? undefined : { reason: "ineligible" }

const FAR = 1e12

const accountLimited = (limit: number | undefined, resetInMs: number) =>
  new UpstreamError.RateLimited({
    message: "HTTP 429: Rate limit exceeded",
    scope: "account",
    retryAfter: Duration.millis(resetInMs),
    ...(limit === undefined ? {} : { limit })
  })

const providerLimited = (retryAfterMs: number) =>
  new UpstreamError.RateLimited({
    message: "HTTP 429: provider rate limited",
    scope: "key",
    retryAfter: Duration.millis(retryAfterMs)
  })

/** Decides synchronously: the lease's key id, "wait" or "refused". */
const decideNow = (selector: KeySelector.Service, req: KeySelector.SelectRequest) => {
  const d = selector.decide(req)
  if (KeySelector.isWait(d)) return { tag: "wait" as const, decision: d }
  if (KeySelector.isNoKeyAvailable(d)) return { tag: "refused" as const, error: d }
  return { tag: "lease" as const, lease: d }
}

const leaseOf = (selector: KeySelector.Service, req: KeySelector.SelectRequest): KeySelector.Lease => {
  const d = decideNow(selector, req)
  if (d.tag !== "lease") throw new Error(`expected a lease, got ${d.tag}`)
  return d.lease
}

describe("AccountPacing", () => {
  it.effect("learns an account's window from X-RateLimit-Limit and -Reset, and paces to it", () =>
    Effect.gen(function* () {
      const pacing = yield* build([red1, red2, blue])
      const redOnly = request({ gate: only("red-1", "red-2"), deadline: FAR })
      // Nothing known yet: every request is a call.
      const first = leaseOf(pacing, redOnly)
      yield* TestClock.adjust(100)
      // Refused: the window admits 3 and reopens at t = 1000, so it is at least 1000 ms long (it
      // held the refused call, admitted at t = 0).
      first.unsafeReport(KeySelector.failure(100, accountLimited(3, 900)))
      expect(yield* pacing.windows).toEqual([
        {
          id: "account:red",
          limit: 3,
          exact: true,
          windowMs: 1000,
          admitted: 1,
          closedUntil: 1000,
          refusals: 1
        }
      ])
      expect(decideNow(pacing, redOnly).tag).toBe("wait")
      // t = 1000: the refused call stays counted until its own window (+2 % slack) is over.
      yield* TestClock.adjust(900)
      expect([0, 1, 2].map(() => decideNow(pacing, redOnly).tag)).toEqual(["lease", "lease", "wait"])
      yield* TestClock.adjust(20) // t = 1020: at most 3 in any 1000 ms
      expect([0, 1].map(() => decideNow(pacing, redOnly).tag)).toEqual(["lease", "wait"])
      yield* TestClock.adjust(999)
      expect(decideNow(pacing, redOnly).tag).toBe("wait")
      yield* TestClock.adjust(1) // t = 2020
      const again = [0, 1].map(() => leaseOf(pacing, redOnly))
      expect(again.every((l) => l.key.account === "red")).toBe(true)
      expect(decideNow(pacing, redOnly).tag).toBe("wait")
      // Refused anyway (the window is longer than learned): it held the 3 calls before the refused
      // one, the first admitted at t = 1000, and ends at t = 2500: at least 1500 ms.
      again[1]!.unsafeReport(KeySelector.failure(1, accountLimited(3, 480)))
      expect((yield* pacing.windows)[0]).toMatchObject({ windowMs: 1500, closedUntil: 2500 })
    })
  )

  it.effect("learns a window from X-RateLimit-* on a success, before any 429", () =>
    Effect.gen(function* () {
      const pacing = yield* build([red1, red2, blue])
      const redOnly = request({ gate: only("red-1", "red-2"), deadline: FAR })
      const first = leaseOf(pacing, redOnly)
      yield* TestClock.adjust(30)
      // It opened its window (2 of 3 left), which ends at t = 1000: at most 1000 ms long.
      first.unsafeReport(KeySelector.success(30, 0.01, { limit: 3, remaining: 2, resetAt: 1000 }))
      expect(yield* pacing.windows).toEqual([
        {
          id: "account:red",
          limit: 3,
          exact: true,
          windowMs: 1000,
          admitted: 1,
          closedUntil: undefined,
          refusals: 0
        }
      ])
      // Paced from now on: two more in this window, none after.
      expect([0, 1, 2].map(() => decideNow(pacing, redOnly).tag)).toEqual(["lease", "lease", "wait"])
      yield* TestClock.adjust(990) // t = 1020: the first call's window (+2 % slack) is over
      const next = leaseOf(pacing, redOnly)
      expect(decideNow(pacing, redOnly).tag).toBe("wait")
      // None left in the window that ends at t = 1700: closed until then, whatever was counted here.
      next.unsafeReport(KeySelector.success(5, 0.01, { limit: 3, remaining: 0, resetAt: 1700 }))
      expect((yield* pacing.windows)[0]).toMatchObject({ closedUntil: 1700, refusals: 0 })
      yield* TestClock.adjust(679)
      expect(decideNow(pacing, redOnly).tag).toBe("wait")
      yield* TestClock.adjust(1)
      expect(decideNow(pacing, redOnly).tag).toBe("lease")
    })
  )

  it.effect("a closed window answers a Wait, not a call, and the Wait ends when the window reopens", () =>
    Effect.gen(function* () {
      const pacing = yield* build([red1, red2, blue])
      const redOnly = request({ gate: only("red-1", "red-2"), deadline: FAR })
      leaseOf(pacing, redOnly).unsafeReport(KeySelector.failure(0, accountLimited(2, 500)))
      const d = decideNow(pacing, redOnly)
      expect(d.tag).toBe("wait")
      const waiting = yield* Effect.fork(KeySelector.toEffect(d.tag === "wait" ? d.decision : (d as never)))
      yield* TestClock.adjust(499)
      expect(waiting.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const lease = yield* Fiber.join(waiting)
      expect(lease.key.account).toBe("red")
    })
  )

  it.effect("another account's keys are used while a window is closed", () =>
    Effect.gen(function* () {
      const pacing = yield* build([red1, red2, blue])
      const any = request({ deadline: FAR })
      const l = leaseOf(pacing, any)
      expect(l.key.id).toBe("red-1")
      l.unsafeReport(KeySelector.failure(0, accountLimited(5, 1000)))
      // Both red keys are gated away: every request goes to blue, synchronously, until t = 1000.
      const picked = [0, 1, 2, 3].map(() => leaseOf(pacing, any).key.id)
      expect(picked).toEqual(["blue-1", "blue-1", "blue-1", "blue-1"])
      yield* TestClock.adjust(1000)
      const after = [0, 1, 2].map(() => leaseOf(pacing, any).key.account)
      expect(after).toContain("red")
    })
  )

  it.effect("past the request's deadline a closed window is a refusal naming the cooldown and when", () =>
    Effect.gen(function* () {
      const pacing = yield* build([red1, red2])
      leaseOf(pacing, request({ deadline: FAR })).unsafeReport(
        KeySelector.failure(0, accountLimited(4, 2000))
      )
      const d = decideNow(pacing, request({ deadline: 1500 }))
      expect(d.tag).toBe("refused")
      if (d.tag !== "refused") return
      expect(d.error.reason).toBe("cooldown")
      expect(d.error.retryAfter === undefined ? undefined : Duration.toMillis(d.error.retryAfter)).toBe(2000)
    })
  )

  it.effect("a 429 without X-RateLimit-* halves the key's estimate; a full window without one grows it", () =>
    Effect.gen(function* () {
      const pacing = yield* build([loner])
      const req = request({ deadline: FAR })
      const held = [0, 1, 2, 3, 4, 5, 6, 7].map(() => leaseOf(pacing, req))
      yield* TestClock.adjust(50)
      // Eight calls in the window before the provider refused: it admits at most half that (AIMD).
      held[7]!.unsafeReport(KeySelector.failure(50, providerLimited(950)))
      // The other calls of that window refused too: the same reset teaches nothing more.
      held[6]!.unsafeReport(KeySelector.failure(50, providerLimited(950)))
      const [w] = yield* pacing.windows
      expect(w).toMatchObject({
        id: "key:loner",
        limit: 4,
        exact: false,
        windowMs: 1000,
        closedUntil: 1000,
        refusals: 1
      })
      expect(decideNow(pacing, req).tag).toBe("wait")
      yield* TestClock.adjust(970) // t = 1020: the eight calls of t = 0 are out of the window
      const next = [0, 1, 2, 3].map(() => leaseOf(pacing, req))
      expect(decideNow(pacing, req).tag).toBe("wait")
      // Refused again: halved again.
      next[3]!.unsafeReport(KeySelector.failure(10, providerLimited(1000)))
      expect((yield* pacing.windows)[0]).toMatchObject({
        limit: 2,
        windowMs: 1000,
        closedUntil: 2020,
        refusals: 2
      })
      yield* TestClock.adjust(1020) // t = 2040: a window of 2 that fills without a refusal...
      leaseOf(pacing, req)
      leaseOf(pacing, req)
      expect(decideNow(pacing, req).tag).toBe("wait")
      yield* TestClock.adjust(1020) // ...and the next admits one more
      expect([0, 1, 2].map(() => decideNow(pacing, req).tag)).toEqual(["lease", "lease", "lease"])
      expect(decideNow(pacing, req).tag).toBe("wait")
    })
  )

  it.effect("an account's window counts the calls of all its keys", () =>
    Effect.gen(function* () {
      const pacing = yield* build([red1, red2])
      const req = request({ deadline: FAR })
      leaseOf(pacing, req).unsafeReport(KeySelector.failure(0, accountLimited(4, 1000)))
      yield* TestClock.adjust(1020)
      const ids = [0, 1, 2, 3].map(() => leaseOf(pacing, req).key.id)
      expect(new Set(ids)).toEqual(new Set(["red-1", "red-2"]))
      expect(decideNow(pacing, req).tag).toBe("wait")
    })
  )
})

// An upstream account as the simulator keeps it: `limit` calls per window of `windowMs`, the
// window opening at the first call after the previous one ended.
class UpstreamAccount {
  start = -Infinity
  count = 0
  refusals = 0
  /** Calls made into each window (refused ones included), by the window's start. */
  readonly perWindow = new Map<number, number>()
  constructor(
    readonly limit: number,
    readonly windowMs: number
  ) {}
  call(now: number): number | undefined {
    if (now >= this.start + this.windowMs) {
      this.start = now
      this.count = 0
    }
    this.perWindow.set(this.start, (this.perWindow.get(this.start) ?? 0) + 1)
    if (this.count >= this.limit) {
      this.refusals++
      return this.start + this.windowMs
    }
    this.count++
    return undefined
  }
}

describe("AccountPacing properties", () => {
  it.effect.prop(
    "admitted calls per account per window never exceed the learned limit",
    {
      red: fc.record({
        limit: fc.integer({ min: 1, max: 12 }),
        windowMs: fc.integer({ min: 100, max: 3000 })
      }),
      blue: fc.record({
        limit: fc.integer({ min: 1, max: 12 }),
        windowMs: fc.integer({ min: 100, max: 3000 })
      }),
      steps: fc.array(
        fc.record({ dt: fc.integer({ min: 0, max: 120 }), account: fc.constantFrom("red", "blue", "any") }),
        { minLength: 150, maxLength: 300 }
      )
    },
    ({ blue: blueSpec, red: redSpec, steps }) =>
      Effect.gen(function* () {
        const pacing = yield* build([red1, red2, blue])
        const upstream = {
          red: new UpstreamAccount(redSpec.limit, redSpec.windowMs),
          blue: new UpstreamAccount(blueSpec.limit, blueSpec.windowMs)
        }
        for (const step of steps) {
          yield* TestClock.adjust(step.dt)
          const now = yield* TestClock.currentTimeMillis
          const gate =
            step.account === "any"
              ? undefined
              : only(...(step.account === "red" ? ["red-1", "red-2"] : ["blue-1"]))
          const d = decideNow(pacing, request({ gate, deadline: FAR }))
          if (d.tag !== "lease") continue
          const account = upstream[d.lease.key.account as "red" | "blue"]
          const refusedUntil = account.call(now)
          d.lease.unsafeReport(
            refusedUntil === undefined
              ? KeySelector.success(0)
              : KeySelector.failure(0, accountLimited(account.limit, refusedUntil - now))
          )
        }
        for (const account of Object.values(upstream)) {
          // One window teaches the limit, the next its length: no later window is sent more than the limit.
          const over = [...account.perWindow.values()].filter((n) => n > account.limit)
          expect(over.length).toBeLessThanOrEqual(2)
        }
      }),
    { timeout: 120_000, fastCheck: { numRuns: 15 } }
  )
})
