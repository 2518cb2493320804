/**
 * Named clients' budgets and rates shared by a fleet: each request reserves its worst-case cost in
 * Redis before it is forwarded and settles with the answer's cost, each step one atomic Lua script
 * under the client's hash tag `{or-balancer:client:<id>}`. Replicas never overshoot a budget
 * together: a reservation is admitted only while the period's settled spend plus every replica's
 * reservations plus it stay within the budget. The UTC period (daily, weekly from Monday, monthly
 * from the 1st) and the one-minute rate window roll over on Redis's `TIME`.
 *
 * One round trip per request (reserve) and one per answer (settle, off the request's path): a
 * budget is a hard cap, and slices of it held by idle replicas would refuse requests the budget
 * still covers. A reservation lapses after `ttlMs` (a replica that died mid-request gives it back).
 * Amounts are integer nano-dollars.
 *
 * When Redis cannot be reached these calls fail with `RedisUnavailable`; the caller falls back to a
 * local share (the gateway: what the budget had left ÷ replicas) and passes what it spent meanwhile
 * as `catchUp` on its next reservation.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as ClientLua from "./internal/clientLua.js"
import { RedisUnavailable } from "./RedisUnavailable.js"
import { RedisStore, type Service as RedisStoreService, type UnsafeResult } from "./RedisStore.js"

/**
 * @since 0.3.0
 * @category Models
 */
export type Period = "daily" | "weekly" | "monthly"

/**
 * @since 0.3.0
 * @category Models
 */
export interface ReserveRequest {
  readonly clientId: string
  /** Unique in the fleet (e.g. replica id and a counter): names the reservation until it settles. */
  readonly reservationId: string
  /** The request's worst-case cost (nano-dollars). */
  readonly amount: number
  /** The budget per period (nano-dollars); undefined: no budget, only the rate. */
  readonly budget: number | undefined
  readonly period: Period
  /** Requests per minute over the fleet; undefined: no rate. */
  readonly rpm: number | undefined
  /** How long the reservation holds if never settled. */
  readonly ttlMs: number
  /** Spend settled while Redis was unreachable, not yet counted there (nano-dollars). */
  readonly catchUp?: number | undefined
  /** The period's spend as this replica last saw it, restored if Redis restarted empty. */
  readonly seen?: Seen | undefined
}

/**
 * A period's spend (nano-dollars) as a replica last saw it, with the period's start (epoch ms):
 * Redis raises its own figure to it (never lowers it), which restores a budget after Redis
 * restarted empty, once any replica that saw it calls.
 *
 * @since 0.3.0
 * @category Models
 */
export interface Seen {
  readonly spent: number
  readonly periodStart: number
}

/**
 * The verdict, with the fleet's counters for the current period. Durations count from the call.
 *
 * @since 0.3.0
 * @category Models
 */
export interface Reservation {
  readonly verdict: "admitted" | "budget" | "rate"
  readonly spent: number
  readonly reserved: number
  /** When refused: how long until the period ends (budget) or the window admits one more (rate). */
  readonly retryInMs: number
  readonly periodEndsInMs: number
}

const reserveArgs = (r: ReserveRequest) =>
  [
    [ClientLua.budgetKey(r.clientId), ClientLua.reservationsKey(r.clientId), ClientLua.rateKey(r.clientId)],
    [
      r.reservationId,
      int(r.amount),
      r.budget === undefined ? -1 : int(r.budget),
      r.period,
      r.rpm === undefined ? 0 : int(r.rpm),
      int(r.ttlMs),
      int(r.catchUp ?? 0),
      int(r.seen?.spent ?? 0),
      r.seen === undefined ? -1 : r.seen.periodStart
    ]
  ] as const

const toReservation = (reply: unknown): Reservation => {
  const a = reply as ReadonlyArray<number>
  const v = Number(a[0])
  return {
    verdict: v === 1 ? "admitted" : v === 0 ? "budget" : "rate",
    spent: Number(a[1]),
    reserved: Number(a[2]),
    retryInMs: Number(a[3]),
    periodEndsInMs: Number(a[4])
  }
}

/**
 * Reserves `amount` of the client's budget and one request of its rate, or says which is spent.
 *
 * @since 0.3.0
 * @category Budgets
 */
export const reserve = (r: ReserveRequest): Effect.Effect<Reservation, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) => redis.run(ClientLua.reserve, ...reserveArgs(r))).pipe(
    Effect.map(toReservation)
  )

/**
 * {@link reserve} outside any fiber, for a request's hot path: `done` gets the reservation, or the
 * reason Redis did not answer (a bug of ours, a script error, counts as unavailable here).
 *
 * @since 0.3.0
 * @category Budgets
 */
export const unsafeReserve = (
  redis: RedisStoreService,
  r: ReserveRequest,
  done: (result: Reservation | RedisUnavailable) => void
): void => redis.unsafeRun(ClientLua.reserve, ...reserveArgs(r), (x) => done(fromUnsafe(x, toReservation)))

const fromUnsafe = <A>(r: UnsafeResult, f: (reply: unknown) => A): A | RedisUnavailable =>
  r._tag === "Reply"
    ? f(r.value)
    : r._tag === "Unavailable"
      ? r.error
      : new RedisUnavailable({ reason: "Rejected", detail: String(r.cause) })

const toSettled = (reply: unknown) => {
  const a = reply as ReadonlyArray<number>
  return { spent: Number(a[0]), reserved: Number(a[1]) }
}

/**
 * Releases a reservation and adds the answer's cost (0 for a failed request) to the period's spend.
 *
 * @since 0.3.0
 * @category Budgets
 */
export const settle = (
  clientId: string,
  reservationId: string,
  cost: number,
  period: Period
): Effect.Effect<{ readonly spent: number; readonly reserved: number }, RedisUnavailable, RedisStore> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(
      ClientLua.settle,
      [ClientLua.budgetKey(clientId), ClientLua.reservationsKey(clientId)],
      [reservationId, int(cost), period]
    )
  ).pipe(Effect.map(toSettled))

/**
 * {@link settle} outside any fiber.
 *
 * @since 0.3.0
 * @category Budgets
 */
export const unsafeSettle = (
  redis: RedisStoreService,
  clientId: string,
  reservationId: string,
  cost: number,
  period: Period,
  done: (result: { readonly spent: number; readonly reserved: number } | RedisUnavailable) => void
): void =>
  redis.unsafeRun(
    ClientLua.settle,
    [ClientLua.budgetKey(clientId), ClientLua.reservationsKey(clientId)],
    [reservationId, int(cost), period],
    (x) => done(fromUnsafe(x, toSettled))
  )

/**
 * The fleet's counters for the client's current period (lapsed reservations returned first),
 * after adding `catchUp` (spend made while Redis was unreachable) and restoring `seen`.
 *
 * @since 0.3.0
 * @category Budgets
 */
export const sync = (
  clientId: string,
  period: Period,
  options: { readonly catchUp?: number | undefined; readonly seen?: Seen | undefined } = {}
): Effect.Effect<
  { readonly spent: number; readonly reserved: number; readonly periodEndsInMs: number },
  RedisUnavailable,
  RedisStore
> =>
  Effect.flatMap(RedisStore, (redis) =>
    redis.run(
      ClientLua.sync,
      [ClientLua.budgetKey(clientId), ClientLua.reservationsKey(clientId)],
      [
        period,
        int(options.seen?.spent ?? 0),
        options.seen === undefined ? -1 : options.seen.periodStart,
        int(options.catchUp ?? 0)
      ]
    )
  ).pipe(
    Effect.map((reply) => {
      const a = reply as ReadonlyArray<number>
      return { spent: Number(a[0]), reserved: Number(a[1]), periodEndsInMs: Number(a[2]) }
    })
  )

const int = (n: number): number => Math.max(0, Math.round(n))
