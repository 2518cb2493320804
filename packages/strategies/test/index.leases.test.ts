import { describe, expect, it } from "@effect/vitest"
import {
  Balancer,
  CreditLookup,
  KeyPool,
  KeySelector,
  Monitor,
  StateStore,
  UpstreamError
} from "@or-balancer/core"
import {
  ConcurrencyLimited,
  CreditAware,
  CreditLedger,
  HealthAware,
  LeastBusy,
  RoundRobin
} from "@or-balancer/strategies"
import { Duration, Effect, FastCheck as fc, Fiber, TestClock } from "effect"
import { key } from "./util.js"

// HealthAware > ConcurrencyLimited > (CreditAware | LeastBusy), driven by random interleavings of
// selections, reports of every kind and interruptions (through KeySelector.use, by hand, and the
// Balancer's run and runHeld, the gateway's way of holding an answer):
// once every fiber has ended, every permit, reservation, in-flight count and trial slot is back.

const pool = [
  key("a", { maxConcurrency: 1 }),
  key("b", { maxConcurrency: 2, account: "acme" }),
  key("c", { maxConcurrency: 1, account: "acme" }),
  key("d") // unknown to the lookup: never eligible under CreditAware
]

const errors: ReadonlyArray<UpstreamError.UpstreamError> = [
  new UpstreamError.ServerError({ message: "502", status: 502 }),
  new UpstreamError.Unauthorized({ message: "401" }),
  new UpstreamError.InsufficientCredits({ message: "402" }),
  new UpstreamError.RateLimited({ message: "429", scope: "account", retryAfter: Duration.millis(3) }),
  new UpstreamError.RateLimited({ message: "429", scope: "key" })
]

type Ending =
  | { readonly _tag: "ok"; readonly cost: number }
  | { readonly _tag: "upstream"; readonly error: number }
  | { readonly _tag: "own" }
  | { readonly _tag: "defect" }

const ending: fc.Arbitrary<Ending> = fc.oneof(
  fc.record({ _tag: fc.constant("ok" as const), cost: fc.integer({ min: 0, max: 30 }).map((c) => c / 100) }),
  fc.record({
    _tag: fc.constant("upstream" as const),
    error: fc.integer({ min: 0, max: errors.length - 1 })
  }),
  fc.record({ _tag: fc.constant("own" as const) }),
  fc.record({ _tag: fc.constant("defect" as const) })
)

const op = fc.record({
  via: fc.constantFrom(
    "use" as const,
    "balancer" as const,
    "raw" as const,
    "held" as const,
    "unsafe" as const
  ),
  // How a held answer ends: succeed, fail (a stream broken after its first byte) or cancel.
  settle: fc.constantFrom("succeed" as const, "fail" as const, "cancel" as const),
  start: fc.integer({ min: 0, max: 6 }),
  hold: fc.integer({ min: 0, max: 6 }),
  ending,
  cut: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined })
})

type BaseName = "credit" | "leastBusy" | "roundRobin"

// How often the synchronous first attempt was taken, over every run: a final test checks it was.
let fastStarts = 0

const build = (base: BaseName) =>
  Effect.gen(function* () {
    const poolService = yield* KeyPool.make(pool).pipe(Effect.orDie)
    const store = yield* StateStore.makeMemory
    const memory = yield* CreditLookup.makeMemory({
      a: CreditLookup.keyInfo(1),
      b: CreditLookup.keyInfo(null),
      c: CreditLookup.keyInfo(0.35)
    })
    const ledger = yield* CreditLedger.make({ ttl: "5 millis", failureTtl: "2 millis" }).pipe(
      Effect.provideService(StateStore.StateStore, store),
      Effect.provideService(CreditLookup.CreditLookup, memory.service)
    )
    type Base = KeyPool.KeyPool | StateStore.StateStore | CreditLedger.CreditLedger
    const withBase = <A, E>(e: Effect.Effect<A, E, Base>) =>
      e.pipe(
        Effect.provideService(KeyPool.KeyPool, poolService),
        Effect.provideService(StateStore.StateStore, store),
        Effect.provideService(CreditLedger.CreditLedger, ledger)
      )
    const bottomOf: Effect.Effect<KeySelector.Service, never, Base> =
      base === "credit"
        ? CreditAware.make({ estimate: 0.1 })
        : base === "leastBusy"
          ? LeastBusy.make
          : RoundRobin.make()
    const bottom = yield* withBase(bottomOf)
    const limited = yield* withBase(
      ConcurrencyLimited.makeWithStatus().pipe(Effect.provideService(KeySelector.KeySelector, bottom))
    )
    const top = yield* withBase(
      HealthAware.make({ baseCooldown: "4 millis", maxCooldown: "8 millis", failureThreshold: 2 }).pipe(
        Effect.provideService(KeySelector.KeySelector, limited.selector)
      )
    )
    const monitor = yield* Monitor.make
    const balancer = yield* withBase(
      Balancer.make({ budget: false, maxAttempts: 3, deadline: "20 millis" }).pipe(
        Effect.provideService(KeySelector.KeySelector, top),
        Effect.provideService(Monitor.Monitor, monitor)
      )
    )
    return { top, status: limited.status, ledger, store, balancer, poolService }
  })

describe("leases under random interleavings", () => {
  for (const base of ["credit", "leastBusy", "roundRobin"] as const) {
    it.effect.prop(
      `HealthAware > ConcurrencyLimited > ${base}: every permit, reservation, count and trial comes back`,
      { ops: fc.array(op, { minLength: 1, maxLength: 14 }) },
      ({ ops }) =>
        Effect.gen(function* () {
          const { balancer, ledger, status, store, top } = yield* build(base)
          const body = (
            o: (typeof ops)[number]
          ): Effect.Effect<number, UpstreamError.UpstreamError | "own"> =>
            Effect.zipRight<void, never, never, number, UpstreamError.UpstreamError | "own", never>(
              Effect.sleep(o.hold),
              o.ending._tag === "ok"
                ? Effect.succeed(o.ending.cost)
                : o.ending._tag === "upstream"
                  ? Effect.fail(errors[o.ending.error]!)
                  : o.ending._tag === "own"
                    ? Effect.fail("own" as const)
                    : Effect.die("boom")
            )
          const request = { attempt: 1, tried: new Set<string>(), deadline: 15 }
          const run = (o: (typeof ops)[number]) =>
            Effect.zipRight(
              Effect.sleep(o.start),
              o.via === "balancer"
                ? balancer.run({}, () => body(o), { costOf: (c) => c })
                : o.via === "unsafe"
                  ? // As the gateway's fast path: a synchronous first attempt, its answer's end settles
                    // it, a client leaving cancels it, and a failure goes on in the Effect loop.
                    Effect.suspend(() => {
                      const started = balancer.unsafeStart({})
                      if (started === undefined) return balancer.run({}, () => body(o), { costOf: (c) => c })
                      fastStarts++
                      return Effect.onExit(
                        Effect.matchCauseEffect(body(o), {
                          onSuccess: (cost) =>
                            Effect.zipRight(
                              Effect.sleep(o.hold),
                              Effect.sync(() =>
                                o.settle === "succeed"
                                  ? started.unsafeSucceed(cost)
                                  : o.settle === "fail"
                                    ? started.unsafeFail(errors[0]!)
                                    : started.unsafeCancel()
                              )
                            ),
                          onFailure: (cause) => {
                            if (o.ending._tag !== "upstream") {
                              started.unsafeCancel()
                              return Effect.failCause(cause)
                            }
                            started.unsafeFail(errors[o.ending.error]!)
                            return started.run(() => body(o), { costOf: (c) => c })
                          }
                        }),
                        (exit) =>
                          Effect.sync(() => (exit._tag === "Success" ? undefined : started.unsafeCancel()))
                      )
                    })
                  : o.via === "held"
                    ? // As the gateway holds an answer: settled when it ends, cancelled if the fiber ends otherwise.
                      Effect.suspend(() => {
                        let held: Balancer.Scoped<number> | undefined
                        return Effect.onExit(
                          Effect.flatMap(
                            balancer.runHeld(
                              {},
                              () => body(o),
                              (h) => {
                                held = h
                              }
                            ),
                            (h) =>
                              Effect.zipRight(
                                Effect.sleep(o.hold),
                                o.settle === "succeed"
                                  ? h.succeed(h.value)
                                  : o.settle === "fail"
                                    ? h.fail(errors[0]!)
                                    : h.cancel
                              )
                          ),
                          (exit) =>
                            exit._tag === "Success" || held === undefined ? Effect.void : held.cancel
                        )
                      })
                    : o.via === "use"
                      ? KeySelector.use(
                          top,
                          request,
                          () => body(o),
                          (exit) =>
                            exit._tag === "Success"
                              ? KeySelector.success(0, exit.value)
                              : KeySelector.cancelled()
                        )
                      : // By hand, as the contract asks: select uninterruptibly, report on every exit.
                        Effect.uninterruptibleMask((restore) =>
                          Effect.flatMap(top.select(request), (lease) =>
                            Effect.flatMap(Effect.exit(restore(body(o))), (exit) =>
                              Effect.zipRight(
                                lease.report(
                                  exit._tag === "Success"
                                    ? KeySelector.success(1, exit.value)
                                    : o.ending._tag === "upstream"
                                      ? KeySelector.failure(1, errors[o.ending.error]!)
                                      : KeySelector.cancelled()
                                ),
                                exit
                              )
                            )
                          )
                        )
            )
          const fibers = yield* Effect.forEach(ops, (o) => Effect.fork(Effect.exit(run(o))))
          const cutter = yield* Effect.fork(
            Effect.forEach(
              ops.flatMap((o, i) => (o.cut === undefined ? [] : [[i, o.cut] as const])),
              ([i, at]) => Effect.zipRight(Effect.sleep(at), Fiber.interruptFork(fibers[i]!)),
              { concurrency: "unbounded", discard: true }
            )
          )
          for (let t = 0; t < 60; t++) yield* TestClock.adjust(1)
          yield* Fiber.join(cutter)
          // Everything has ended by now (deadlines are 15 and 20 ms): a fiber still running is stuck.
          const polls = yield* Effect.forEach(fibers, Fiber.poll)
          expect(polls.filter((p) => p._tag === "None").length).toBe(0)

          const s = yield* status
          expect(s.inUse.size).toBe(0)
          expect(s.waiting).toBe(0)
          for (const e of yield* ledger.snapshot) expect(e.reserved).toBeCloseTo(0, 9)
          for (const [, n] of yield* store.entries<number>("or-balancer/in-flight")) expect(n).toBe(0)
          for (const [, r] of yield* store.entries<HealthAware.Record>("or-balancer/health"))
            expect(r.testing ?? false).toBe(false)
        }),
      {
        fastCheck: {
          numRuns: 25,
          // Always tried: a held answer interrupted while it is held, and a 402 while two requests
          // wait for a permit (a hang: the freed permit went back and forth between them). Both
          // found by shrinking. Each example is the property's argument tuple; @effect/vitest types
          // it as the record alone.
          examples: [
            [
              {
                ops: [
                  { via: "held", settle: "succeed", start: 3, hold: 0, ending: { _tag: "defect" } },
                  {
                    via: "held",
                    settle: "cancel",
                    start: 3,
                    hold: 1,
                    ending: { _tag: "ok", cost: 0.1 },
                    cut: 4
                  },
                  {
                    via: "held",
                    settle: "succeed",
                    start: 1,
                    hold: 1,
                    ending: { _tag: "upstream", error: 2 },
                    cut: 8
                  }
                ]
              }
            ],
            [
              {
                ops: [
                  {
                    via: "held",
                    settle: "succeed",
                    start: 0,
                    hold: 3,
                    ending: { _tag: "ok", cost: 0 },
                    cut: 4
                  }
                ]
              }
            ]
          ] as never
        },
        timeout: 90_000
      }
    )
  }

  it("the synchronous first attempt was exercised", () => {
    expect(fastStarts).toBeGreaterThan(0)
  })
})
