/**
 * The Fleet layer under the real strategies, three replicas in one process, each with its own
 * connection to one real redis-server: ConcurrencyLimited's cap holds over the fleet and follows
 * demand; HealthAware's ejections reach the other replicas and a half-open key gets one trial in
 * the fleet; Redis down, a replica runs on its local share (cap ÷ replicas) and says so.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as ConcurrencyLimited from "@or-balancer/strategies/ConcurrencyLimited"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import { Fleet, LeaseKeeper } from "../src/index.js"
import { startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

let n = 0
const keyOf = (id: string, maxConcurrency?: number) =>
  Key.make({
    id: `${id}-${++n}-${Math.floor(performance.now())}`,
    secret: Redacted.make(`sk-or-v1-test-${id}-000000000000`),
    ...(maxConcurrency === undefined ? {} : { maxConcurrency })
  })

/** One replica: its selector stack on its own pool, store and Fleet layer. */
const replica = (
  i: number,
  keys: ReadonlyArray<Key.Key>,
  stack: "concurrency" | "health",
  url = server.url
) =>
  Effect.gen(function* () {
    const base = Layer.mergeAll(KeyPool.layer(keys).pipe(Layer.orDie), StateStore.layerMemory)
    const fleet = Fleet.layer({
      url,
      replicaId: `r${i}`,
      replicas: 3,
      renewEveryMs: 20,
      pollEveryMs: 20
    }).pipe(Layer.orDie)
    const selector =
      stack === "concurrency"
        ? ConcurrencyLimited.layer().pipe(Layer.provide(RoundRobin.layer({ name: `r${i}` })))
        : HealthAware.layer({ baseCooldown: Duration.millis(300) }).pipe(
            Layer.provide(RoundRobin.layer({ name: `r${i}` }))
          )
    const ctx = yield* Layer.build(selector.pipe(Layer.provideMerge(Layer.merge(base, fleet))))
    return { selector: Context.get(ctx, KeySelector.KeySelector), fleet: Context.get(ctx, Fleet.Fleet) }
  })

const request = (deadlineMs = 5_000): KeySelector.SelectRequest => ({
  attempt: 1,
  tried: new Set(),
  deadline: Date.now() + deadlineMs
})

// Whether 4 selections on each replica all avoid key `id` (each lease reported at once).
const avoid = (replicas: ReadonlyArray<{ readonly selector: KeySelector.Service }>, id: string) =>
  Effect.gen(function* () {
    let avoided = true
    for (const r of replicas) {
      for (let i = 0; i < 4; i++) {
        const l = yield* r.selector.select(request())
        if (l.key.id === id) avoided = false
        yield* KeySelector.report(l, KeySelector.success(1))
      }
    }
    return avoided
  })

/**
 * How long after `since` (performance.now()) every one of `replicas` avoids key `id`, polled until
 * `giveUpMs`; with the worst event-loop delay meanwhile, which stretches the replicas' polls of the
 * fleet (and this test's) on a loaded machine, so a bound is checked against it, not wall time alone.
 */
const avoidedAfter = (
  replicas: ReadonlyArray<{ readonly selector: KeySelector.Service }>,
  id: string,
  since: number,
  giveUpMs: number
) =>
  Effect.gen(function* () {
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    let avoided = false
    let at = performance.now()
    while (!avoided && at - since < giveUpMs) {
      yield* Effect.sleep(5)
      at = performance.now()
      avoided = yield* avoid(replicas, id)
    }
    delay.disable()
    return { avoided, ms: at - since, lagMs: delay.max / 1e6 }
  })

describe("Fleet on Redis", () => {
  it.scopedLive("a key's cap holds summed over 3 replicas, and capacity follows demand", () =>
    Effect.gen(function* () {
      const cap = 6
      const key = keyOf("cap", cap)
      const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(i, [key], "concurrency"))
      const fleetNow = { now: 0, max: 0 }
      const mine = [0, 0, 0]
      const myMax = [0, 0, 0]
      const work = (i: number, requests: number) =>
        Effect.forEach(
          Array.from({ length: requests }),
          () =>
            Effect.flatMap(replicas[i]!.selector.select(request()), (lease) =>
              Effect.gen(function* () {
                fleetNow.now++
                mine[i]!++
                fleetNow.max = Math.max(fleetNow.max, fleetNow.now)
                myMax[i] = Math.max(myMax[i]!, mine[i]!)
                yield* Effect.sleep(5)
                fleetNow.now--
                mine[i]!--
                yield* KeySelector.report(lease, KeySelector.success(5))
              })
            ),
          { concurrency: 12, discard: true }
        )
      // Replica 0 alone: it gets more than a third of the cap once its demand is known.
      yield* work(0, 120)
      assert.isAbove(myMax[0]!, cap / 3)
      // All three busy at once.
      yield* Effect.all([work(0, 150), work(1, 150), work(2, 150)], { concurrency: "unbounded" })
      assert.isAtMost(fleetNow.max, cap)
      assert.isAtLeast(fleetNow.max, cap - 1)
      console.log(
        `fleet cap ${cap}: max in flight over 3 replicas ${fleetNow.max}; replica 0 alone ${myMax[0]}`
      )
    })
  )

  // Bursts of 4 selections every 10 ms on each of 3 replicas, each held 15 ms: up to ~8 in use on
  // each. A selection that must wait on Redis is one whose synchronous decision is a `Wait` (for a
  // slice's renewal); counted so, not by wall time, which a loaded machine stretches anyway.
  const steady = (label: string, cap: number) =>
    Effect.gen(function* () {
      const key = keyOf(label, cap)
      const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(i, [key], "concurrency"))
      let waited = 0
      let slow = 0
      let selections = 0
      const burst = (i: number, record: boolean) =>
        Effect.forEach(
          [0, 1, 2, 3],
          () =>
            Effect.gen(function* () {
              const selector = replicas[i]!.selector
              const t0 = performance.now()
              const decision = selector.decide(request())
              const mustWait = KeySelector.isWait(decision)
              const lease = KeySelector.isLease(decision) ? decision : yield* selector.select(request())
              if (record) {
                selections++
                if (mustWait) waited++
                if (performance.now() - t0 > 2) slow++
              }
              yield* Effect.sleep(15)
              yield* KeySelector.report(lease, KeySelector.success(15))
            }),
          { concurrency: "unbounded", discard: true }
        )
      const load = (i: number, bursts: number, record: boolean) =>
        Effect.forEach(
          Array.from({ length: bursts }),
          () => Effect.zipRight(Effect.fork(burst(i, record)), Effect.sleep(10)),
          { discard: true }
        )
      // Warm-up: the slices learn the demand.
      yield* Effect.all(
        [0, 1, 2].map((i) => load(i, 30, false)),
        { concurrency: "unbounded" }
      )
      yield* Effect.all(
        [0, 1, 2].map((i) => load(i, 60, true)),
        { concurrency: "unbounded" }
      )
      yield* Effect.sleep(100)
      console.log(
        `${label} (cap ${cap}): ${waited} of ${selections} selections waited on Redis; ${slow} took > 2 ms`
      )
      assert.isAtLeast(selections, 600)
      assert.isAtMost(waited, selections * 0.02)
    })

  it.scopedLive("steady load below the cap never waits on Redis: slices have headroom and renew ahead", () =>
    steady("steady", 60)
  )

  // Cap 45: the slices' headroom (2 × ~8 + 2 each) adds up past the cap, so the pool is all granted
  // and renewed every tick; load within the even share (15) still does not wait on those renewals.
  it.scopedLive("a pool all granted: load within the even share (cap ÷ replicas) never waits on Redis", () =>
    steady("tight", 45)
  )

  it.scopedLive(
    "an ejection on one replica reaches the others; a half-open key gets one trial in the fleet",
    () =>
      Effect.gen(function* () {
        const a = keyOf("a")
        const b = keyOf("b")
        const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(i, [a, b], "health"))
        // Replica 0 leases until it gets `a`, then reports a 401: `a` is ejected (300 ms).
        let lease = yield* replicas[0]!.selector.select(request())
        if (lease.key.id !== a.id) {
          yield* KeySelector.report(lease, KeySelector.success(1))
          lease = yield* replicas[0]!.selector.select(request())
        }
        assert.strictEqual(lease.key.id, a.id)
        const ejectedAt = performance.now()
        yield* KeySelector.report(
          lease,
          KeySelector.failure(1, new UpstreamError.Unauthorized({ message: "401" }))
        )
        // The others avoid `a` within 100 ms of the 401 (plus the event loop's worst delay meanwhile).
        const spread = yield* avoidedAfter([replicas[1]!, replicas[2]!], a.id, ejectedAt, 250)
        console.log(
          `ejection reached the others in ${spread.ms.toFixed(0)} ms (loop delay ${spread.lagMs.toFixed(0)} ms)`
        )
        assert.isTrue(spread.avoided)
        assert.isAtMost(spread.ms, 100 + spread.lagMs)
        // After the ejection `a` is half-open: every replica tries for it at once; at most one trial.
        // A probe call that timed out (a loaded machine) takes none: then the key is tried again
        // after the trial time (2 s), and one trial there must be.
        yield* Effect.sleep(300)
        let trials = 0
        for (let round = 0; round < 3 && trials === 0; round++) {
          if (round > 0) yield* Effect.sleep(2_100)
          const leases = yield* Effect.forEach(
            replicas.flatMap((r) => [r, r]),
            (r) => r.selector.select(request()),
            { concurrency: "unbounded" }
          )
          trials = leases.filter((l) => l.key.id === a.id).length
          assert.isAtMost(trials, 1)
          if (trials === 0)
            yield* Effect.forEach(leases, (l) => KeySelector.report(l, KeySelector.success(1)))
        }
        assert.strictEqual(trials, 1)
      })
  )

  it.scopedLive("a 429's cooldown on one replica reaches the others; a shorter one never ends it", () =>
    Effect.gen(function* () {
      const a = keyOf("a")
      const b = keyOf("b")
      const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(i, [a, b], "health"))
      const leaseOf = (r: (typeof replicas)[number], id: string) =>
        Effect.gen(function* () {
          for (;;) {
            const l = yield* r.selector.select(request())
            if (l.key.id === id) return l
            yield* KeySelector.report(l, KeySelector.success(1))
          }
        })
      const limited = (ms: number) =>
        KeySelector.failure(
          1,
          new UpstreamError.RateLimited({ message: "429", scope: "key", retryAfter: Duration.millis(ms) })
        )
      // Replica 1 has a request on `a` out already; replica 0's gets a 429 with a long Retry-After.
      const late = yield* leaseOf(replicas[1]!, a.id)
      const limitedAt = performance.now()
      yield* KeySelector.report(yield* leaseOf(replicas[0]!, a.id), limited(3_000))
      // The others avoid `a` within 100 ms of the 429 (plus the event loop's worst delay meanwhile).
      const spread = yield* avoidedAfter([replicas[1]!, replicas[2]!], a.id, limitedAt, 1_000)
      assert.isTrue(spread.avoided)
      assert.isAtMost(spread.ms, 100 + spread.lagMs)
      // Replica 1's answer comes back later with a shorter Retry-After: once that has passed, the
      // fleet's longer cooldown still stands.
      yield* KeySelector.report(late, limited(100))
      yield* Effect.sleep(300)
      assert.isBelow(performance.now() - limitedAt, 3_000)
      assert.isTrue(yield* avoid([replicas[1]!, replicas[2]!], a.id))
    })
  )

  it.scopedLive("Redis down: a replica serves on its local share (cap ÷ replicas) and reports degraded", () =>
    Effect.gen(function* () {
      const down = startRedis()
      const url = down.url
      down.stop()
      const key = keyOf("down", 6)
      const r = yield* replica(0, [key], "concurrency", url)
      let now = 0
      let max = 0
      yield* Effect.forEach(
        Array.from({ length: 40 }),
        () =>
          Effect.flatMap(r.selector.select(request()), (lease) =>
            Effect.gen(function* () {
              now++
              max = Math.max(max, now)
              yield* Effect.sleep(3)
              now--
              yield* KeySelector.report(lease, KeySelector.success(3))
            })
          ),
        { concurrency: 12, discard: true }
      )
      assert.strictEqual(max, 2)
      assert.isTrue(r.fleet.keeper.unsafeDegraded())
      assert.strictEqual((yield* Metric.value(LeaseKeeper.degradedGauge)).value, 1)
      // Redis back: the replica resyncs without a restart.
      down.start()
      yield* Effect.sleep(1_500)
      assert.isFalse(r.fleet.keeper.unsafeDegraded())
      assert.strictEqual((yield* Metric.value(LeaseKeeper.degradedGauge)).value, 0)
      down.close()
    })
  )
})
