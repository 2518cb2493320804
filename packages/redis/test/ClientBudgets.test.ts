import * as CreditLookup from "@or-balancer/core/CreditLookup"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { ClientBudgets, RedisStore, RedisUnavailable } from "../src/index.js"
import { asReplica, freshKeys, startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const freshClient = freshKeys("client")
// Replicas' connections; 150 calls at once on a loaded machine (test files run side by side) can
// take over the default 100 ms timeout.
const replicasOn = (s: typeof server, n: number) =>
  Effect.all(Array.from({ length: n }, () => RedisStore.make({ url: s.url, commandTimeoutMs: 2_000 })))
const CENT = 10_000_000 // $0.01 in nano-dollars

describe("client budgets", () => {
  it.scopedLive(
    "3 replicas reserving $0.01 at once against $0.50: exactly 50 admitted, the rest refused",
    () =>
      Effect.gen(function* () {
        const stores = yield* replicasOn(server, 3)
        const clientId = freshClient()
        let n = 0
        const verdicts = yield* Effect.forEach(
          Array.from({ length: 150 }, (_, i) => stores[i % 3]!),
          (store) =>
            asReplica(
              store,
              ClientBudgets.reserve({
                clientId,
                reservationId: `r${++n}`,
                amount: CENT,
                budget: 50 * CENT,
                period: "daily",
                rpm: undefined,
                ttlMs: 60_000
              })
            ),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(verdicts.filter((v) => v.verdict === "admitted").length, 50)
        assert.strictEqual(verdicts.filter((v) => v.verdict === "budget").length, 100)
        const refused = verdicts.find((v) => v.verdict === "budget")!
        const now = Date.now()
        assert.closeTo(refused.retryInMs, CreditLookup.nextReset("daily", now) - now, 2_000)
        // Settling at a lower cost frees the difference for the next request.
        const after = yield* asReplica(stores[0]!, ClientBudgets.settle(clientId, "r1", CENT / 2, "daily"))
        assert.deepStrictEqual(after, { spent: CENT / 2, reserved: 49 * CENT })
        const again = yield* asReplica(
          stores[1]!,
          ClientBudgets.reserve({
            clientId,
            reservationId: "again",
            amount: CENT / 2,
            budget: 50 * CENT,
            period: "daily",
            rpm: undefined,
            ttlMs: 60_000
          })
        )
        assert.strictEqual(again.verdict, "admitted")
      })
  )

  it.scopedLive("a reservation never settled lapses after its TTL; catch-up spend counts", () =>
    Effect.gen(function* () {
      const [store] = yield* replicasOn(server, 1)
      const clientId = freshClient()
      const reserve = (id: string, catchUp = 0) =>
        asReplica(
          store!,
          ClientBudgets.reserve({
            clientId,
            reservationId: id,
            amount: CENT,
            budget: 2 * CENT,
            period: "weekly",
            rpm: undefined,
            ttlMs: 300,
            catchUp
          })
        )
      assert.strictEqual((yield* reserve("a")).verdict, "admitted")
      assert.strictEqual((yield* reserve("b")).verdict, "admitted")
      assert.strictEqual((yield* reserve("c")).verdict, "budget")
      yield* Effect.sleep(400)
      assert.deepStrictEqual(
        yield* asReplica(store!, ClientBudgets.sync(clientId, "weekly")).pipe(
          Effect.map((s) => [s.spent, s.reserved])
        ),
        [0, 0]
      )
      // A replica that spent $0.015 while Redis was away: only $0.005 left.
      const d = yield* reserve("d", 1.5 * CENT)
      assert.strictEqual(d.verdict, "budget")
      assert.strictEqual(d.spent, 1.5 * CENT)
    })
  )

  it.scopedLive(
    "after Redis lost everything, a replica's last seen spend restores the budget (raised, never lowered)",
    () =>
      Effect.gen(function* () {
        const [store] = yield* replicasOn(server, 1)
        const clientId = freshClient()
        const periodStart = CreditLookup.periodStart("daily", Date.now())
        const sync = (spent: number) =>
          asReplica(store!, ClientBudgets.sync(clientId, "daily", { seen: { spent, periodStart } }))
        assert.strictEqual((yield* sync(30 * CENT)).spent, 30 * CENT)
        // An older, lower figure from another replica changes nothing.
        assert.strictEqual((yield* sync(10 * CENT)).spent, 30 * CENT)
        // A figure from another period is not this period's spend.
        const old = yield* asReplica(
          store!,
          ClientBudgets.sync(freshClient(), "daily", {
            seen: { spent: 5 * CENT, periodStart: periodStart - 86_400_000 }
          })
        )
        assert.strictEqual(old.spent, 0)
      })
  )

  it.scopedLive("the rate is fleet-wide over a sliding minute, with the wait until a slot frees", () =>
    Effect.gen(function* () {
      const stores = yield* replicasOn(server, 3)
      const clientId = freshClient()
      const verdicts = yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => i),
        (i) =>
          asReplica(
            stores[i % 3]!,
            ClientBudgets.reserve({
              clientId,
              reservationId: `q${i}`,
              amount: 0,
              budget: undefined,
              period: "daily",
              rpm: 5,
              ttlMs: 60_000
            })
          ),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(verdicts.filter((v) => v.verdict === "admitted").length, 5)
      const r = verdicts.find((v) => v.verdict === "rate")!
      assert.isAbove(r.retryInMs, 55_000)
      assert.isAtMost(r.retryInMs, 60_000)
    })
  )

  it.scopedLive(
    "unsafeReserve / unsafeSettle (no fiber) answer as reserve / settle; a closed port is RedisUnavailable",
    () =>
      Effect.gen(function* () {
        const [store] = yield* replicasOn(server, 1)
        const clientId = freshClient()
        const request = (reservationId: string) => ({
          clientId,
          reservationId,
          amount: CENT,
          budget: CENT,
          period: "daily" as const,
          rpm: undefined,
          ttlMs: 60_000
        })
        const unsafe = (reservationId: string) =>
          Effect.async<ClientBudgets.Reservation | RedisUnavailable.RedisUnavailable>((resume) =>
            ClientBudgets.unsafeReserve(store!, request(reservationId), (r) => resume(Effect.succeed(r)))
          )
        const first = yield* unsafe("u1")
        assert.strictEqual((first as ClientBudgets.Reservation).verdict, "admitted")
        assert.strictEqual(((yield* unsafe("u2")) as ClientBudgets.Reservation).verdict, "budget")
        const settled = yield* Effect.async<unknown>((resume) =>
          ClientBudgets.unsafeSettle(store!, clientId, "u1", CENT / 2, "daily", (r) =>
            resume(Effect.succeed(r))
          )
        )
        assert.deepStrictEqual(settled, { spent: CENT / 2, reserved: 0 })
        const closed = yield* RedisStore.make({ url: "redis://127.0.0.1:1/0", connectTimeoutMs: 200 })
        const down = yield* Effect.async<unknown>((resume) =>
          ClientBudgets.unsafeReserve(closed, request("u3"), (r) => resume(Effect.succeed(r)))
        )
        assert.instanceOf(down, RedisUnavailable.RedisUnavailable)
      })
  )

  it.scopedLive("periods end at 00:00 UTC by Redis's clock: tomorrow, next Monday, the 1st", () =>
    Effect.gen(function* () {
      const [store] = yield* replicasOn(server, 1)
      for (const period of ["daily", "weekly", "monthly"] as const) {
        const s = yield* asReplica(store!, ClientBudgets.sync(freshClient(), period))
        const now = Date.now()
        assert.closeTo(s.periodEndsInMs, CreditLookup.nextReset(period, now) - now, 2_000, period)
      }
    })
  )
})
